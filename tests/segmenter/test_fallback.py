"""The segmenter owns channel fallback: a dunning notice that fails permanently sends its step on the next
channel of the step (through the same gate), once, under the id the segmenter gives that channel."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from arrears_segmenter.schedule.service import load_new_version
from arrears_shared.events import DeliveryStatus, MessageSent, Tier

from .support import account, decisions, deps, handle, notices, run_tick
from .test_features import DEFAULT_YAML, NOON_NY

FALLBACK_YAML = DEFAULT_YAML.replace(
    "    channels: [sms, email]\n", "    channels: [sms, email]\n    channel_mode: fallback\n"
)
_versions = iter(range(20, 100))  # the module's tests share one database: each stores a newer version


def failed(n: dict[str, Any], at: datetime, *, permanent: bool = True) -> MessageSent:
    return MessageSent(
        account_id=n["account_id"],
        notice_id=n["notice_id"],
        channel=n["channel"],
        status=DeliveryStatus.FAILED,
        provider="quo",
        to=n["to"],
        tier=Tier(n["tier"]),
        step=n["step"],
        reason="quo 30003: unreachable",
        permanent=permanent,
        sent_at=at,
    )


async def _first_notice(engine: Any, d: Any, aid: str) -> dict[str, Any]:
    async with engine.begin() as c:
        doc = FALLBACK_YAML.replace("version: 1", f"version: {next(_versions)}")
        await load_new_version(c, doc, "ops", d, d.clock.now())
    await handle(engine, d, account(aid, due_date=date(2026, 3, 1)))
    await run_tick(engine, d)
    (first,) = await notices(engine, aid)
    assert first["channel"] == "sms" and first["notice_id"].endswith(":sms")
    return first


async def test_a_permanent_failure_sends_the_step_on_the_next_channel_once(engine) -> None:
    d = deps(NOON_NY)
    first = await _first_notice(engine, d, "F-1")
    await handle(
        engine, d, failed(first, d.clock.now(), permanent=False)
    )  # transient: the dispatcher retries
    assert len(await notices(engine, "F-1")) == 1
    await handle(engine, d, failed(first, d.clock.now()))
    await handle(engine, d, failed(first, d.clock.now()))  # the same failure reported twice (responses too)
    sent = await notices(engine, "F-1")
    assert [(n["step"], n["channel"], n["to"]) for n in sent] == [
        (first["step"], "sms", first["to"]),
        (first["step"], "email", "ada@example.com"),
    ]
    assert sent[1]["notice_id"] == first["notice_id"].removesuffix(":sms") + ":email"
    rules = [r["rule_id"] for r in await decisions(engine, "F-1")]
    assert "invalid_address.sms" in rules  # why sms was passed over
    # the email fails too: no channel is left, nothing more goes out, and the next tick changes nothing
    await handle(engine, d, failed(sent[1], d.clock.now()))
    await run_tick(engine, d)
    assert len(await notices(engine, "F-1")) == 2


async def test_a_fallback_outside_contact_hours_is_due_when_they_open(engine) -> None:
    d = deps(NOON_NY)
    first = await _first_notice(engine, d, "F-2")
    d.clock.advance(timedelta(hours=11))  # 23:00 in New York: no contact until 08:00
    await handle(engine, d, failed(first, d.clock.now()))
    (_, email) = await notices(engine, "F-2")
    assert email["channel"] == "email"
    assert datetime.fromisoformat(email["due_at"]) == datetime(2026, 4, 16, 12, 0, tzinfo=UTC)  # 08:00 EDT


async def test_no_fallback_when_the_step_sends_on_every_channel(engine) -> None:
    d = deps(NOON_NY)
    async with engine.begin() as c:
        await load_new_version(
            c, DEFAULT_YAML.replace("version: 1", f"version: {next(_versions)}"), "ops", d, NOON_NY
        )
    await handle(engine, d, account("F-3", due_date=date(2026, 3, 1)))
    await run_tick(engine, d)
    sent = await notices(engine, "F-3")
    assert sorted(n["channel"] for n in sent) == ["email", "sms"]  # channel_mode all
    await handle(engine, d, failed(next(n for n in sent if n["channel"] == "sms"), d.clock.now()))
    assert len(await notices(engine, "F-3")) == 2
