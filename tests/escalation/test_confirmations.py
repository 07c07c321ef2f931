"""Customer confirmations (issue #18 item 4), planned by the segmenter on a real PostgreSQL: a payment
receipt, a promise and a payment-plan confirmation, a dispute acknowledgement — each one `notice-due` with
its own purpose, once per triggering fact, on the customer's channel, in their language, through the
compliance gate (an opt-out suppresses, quiet hours defer), with a decision saying why. The dispatch half
(the emulator ledgers) is in test_confirmations_dispatch.py."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from arrears_segmenter.consumer import make_handler
from arrears_segmenter.payments.confirmations import receipt_number
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.events import (
    AccountChanged,
    DeliveryStatus,
    Intent,
    MessageSent,
    OverrideRequested,
    Tier,
)
from arrears_shared.stream.transaction import transaction
from segmenter.support import SCHEMA, account, decisions, deps, envelope, notices, reply, timers
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

NOON_NY = datetime(2026, 4, 15, 16, 0, tzinfo=UTC)  # 12:00 in New York, 10:00 in Mexico City
NIGHT_NY = datetime(2026, 4, 15, 5, 0, tzinfo=UTC)  # 01:00 in New York


@pytest.fixture(scope="module")
def segmenter_url(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("segmenter_confirmations")
    upgrade(url, "segmenter")
    return url


@pytest.fixture
async def engine(segmenter_url: str) -> AsyncIterator[AsyncEngine]:
    e = make_engine(segmenter_url)
    yield e
    await e.dispose()


async def handle(engine: AsyncEngine, now: datetime, *events: Any, ids: list[str] | None = None) -> None:
    envs = [envelope(e, (ids or [None] * len(events))[i]) for i, e in enumerate(events)]
    async with transaction(engine, SCHEMA, "segmenter") as tx:
        await make_handler(deps(now))(envs, tx)


def payment(aid: str, when: datetime, **kw: Any) -> AccountChanged:
    return account(
        aid,
        change="payment",
        source="payment",
        balance_minor=kw.pop("balance_minor", 30_000),
        last_payment_minor=20_000,
        last_payment_date=when.date(),
        content_hash=f"paid-{when.isoformat()}",
        as_of=when,
        **kw,
    )


def purposeful(found: list[dict[str, Any]], purpose: str) -> list[dict[str, Any]]:
    return [n for n in found if n["purpose"] == purpose]


async def test_a_payment_gets_one_receipt_and_a_replay_sends_nothing(engine) -> None:
    aid = "C-1"
    await handle(engine, NOON_NY, account(aid, due_date=date(2026, 4, 1)))
    paid = payment(aid, NOON_NY)
    await handle(engine, NOON_NY, paid, ids=["payment:stripe:pi_9"])
    await handle(engine, NOON_NY, paid, ids=["payment:stripe:pi_9"])  # the same fact again (a replay)
    (receipt,) = purposeful(await notices(engine, aid, None), "payment_receipt")
    assert receipt["notice_id"] == f"{aid}:payment_receipt:payment:stripe:pi_9"
    assert receipt["ce_id"] == f"notice-due:{receipt['notice_id']}"
    assert (receipt["channel"], receipt["to"], receipt["template_id"]) == (
        "sms",
        "+14155550100",
        "payment_receipt",
    )
    assert receipt["about_amount_minor"] == 20_000 and receipt["balance_minor"] == 30_000
    assert receipt["reference"] == receipt_number("payment:stripe:pi_9")
    assert receipt["locale"] is None  # a US account: the default language (en)
    assert receipt["priority"] > 100  # ahead of any reminder in a backlog
    # its delivery, read back by the segmenter, is not a dunning step and wakes nothing
    before = await notices(engine, aid, None)
    steps_before = [(t["step"], t["state"], t["due_at"]) for t in await timers(engine, aid)]
    sent = MessageSent(
        account_id=aid,
        notice_id=receipt["notice_id"],
        channel="sms",
        status=DeliveryStatus.SENT,
        provider="quo",
        to=receipt["to"],
        tier=Tier.REMINDER,
        step=0,
        purpose="payment_receipt",
        sent_at=NOON_NY,
    )
    await handle(engine, NOON_NY, sent)
    assert await notices(engine, aid, None) == before
    assert [(t["step"], t["state"], t["due_at"]) for t in await timers(engine, aid)] == steps_before
    async with engine.connect() as c:
        last_step = (
            await c.execute(
                text("SELECT last_step FROM segmenter.accounts WHERE account_id = :a"), {"a": aid}
            )
        ).scalar()
    assert last_step == 0


async def test_a_receipt_after_a_payment_in_full_is_still_sent(engine) -> None:
    aid = "C-2"
    await handle(engine, NOON_NY, account(aid, due_date=date(2026, 4, 1)))
    await handle(
        engine, NOON_NY, payment(aid, NOON_NY, balance_minor=0, status="paid"), ids=["payment:generic:p2"]
    )
    (receipt,) = purposeful(await notices(engine, aid, None), "payment_receipt")
    assert receipt["balance_minor"] == 0


async def test_a_spanish_speaking_account_gets_spanish(engine) -> None:
    aid = "C-3"
    mx = {"timezone": "America/Mexico_City", "country": "MX", "region": None}
    await handle(engine, NOON_NY, account(aid, due_date=date(2026, 4, 1), **mx))
    await handle(engine, NOON_NY, payment(aid, NOON_NY, **mx), ids=["payment:stripe:pi_mx"])
    (receipt,) = purposeful(await notices(engine, aid, None), "payment_receipt")
    assert receipt["locale"] == "es"


async def test_an_opted_out_channel_is_skipped_and_no_channel_left_suppresses_with_a_reason(engine) -> None:
    aid = "C-4"
    await handle(engine, NOON_NY, account(aid, due_date=date(2026, 4, 1)))
    await handle(engine, NOON_NY, reply(aid, Intent.OPT_OUT))
    await handle(engine, NOON_NY, payment(aid, NOON_NY), ids=["payment:stripe:pi_4"])
    (receipt,) = purposeful(await notices(engine, aid, None), "payment_receipt")
    assert (receipt["channel"], receipt["to"]) == ("email", "ada@example.com")
    assert any(
        d["rule_id"] == "opt_out.sms" and d["outcome"] == "suppressed" for d in await decisions(engine, aid)
    )
    await handle(engine, NOON_NY, reply(aid, Intent.OPT_OUT, channel="email", from_address="ada@example.com"))
    later = NOON_NY + timedelta(hours=1)
    await handle(engine, later, payment(aid, later, balance_minor=10_000), ids=["payment:stripe:pi_4b"])
    assert len(purposeful(await notices(engine, aid, None), "payment_receipt")) == 1
    found = await decisions(engine, aid)
    assert any(d["rule_id"] == "opt_out.email" for d in found)
    assert any(
        d["rule_id"] == "customer_notice.payment_receipt" and d["outcome"] == "suppressed" for d in found
    )


async def test_a_confirmation_at_night_is_due_when_contact_hours_open(engine) -> None:
    aid = "C-5"
    await handle(engine, NIGHT_NY, account(aid, due_date=date(2026, 4, 1)))
    await handle(engine, NIGHT_NY, payment(aid, NIGHT_NY), ids=["payment:stripe:pi_5"])
    (receipt,) = purposeful(await notices(engine, aid, None), "payment_receipt")
    assert datetime.fromisoformat(receipt["due_at"]) == datetime(2026, 4, 15, 12, 0, tzinfo=UTC)  # 08:00 NY
    deferred = [d for d in await decisions(engine, aid) if d["notice_id"] == receipt["notice_id"]]
    assert [d["outcome"] for d in deferred] == ["deferred"]


async def test_promises_plans_and_disputes_from_replies_are_confirmed_once_on_the_reply_channel(
    engine,
) -> None:
    aid = "C-6"
    await handle(engine, NOON_NY, account(aid, due_date=date(2026, 4, 1)))
    promise = reply(
        aid,
        Intent.PROMISE_TO_PAY,
        channel="email",
        from_address="ada@example.com",
        reply_id="r-promise-6",
        promise_amount_minor=20_000,
        promise_date=date(2026, 4, 24),
    )
    plan = reply(
        aid,
        Intent.PROMISE_TO_PAY,
        reply_id="r-plan-6",
        promise_amount_minor=5_000,
        promise_date=date(2026, 4, 20),
        promise_plan_every="week",
    )
    dispute = reply(aid, Intent.DISPUTE, reply_id="r-dispute-6")
    unsure = reply(
        aid, Intent.OTHER, reply_id="r-other-6", needs_review=True, suggested_intent=Intent.DISPUTE
    )
    for ev in (promise, promise, plan, dispute, dispute, unsure):
        await handle(engine, NOON_NY, ev)
    found = await notices(engine, aid, None)
    (p,) = purposeful(found, "promise_confirmation")
    assert (p["channel"], p["about_amount_minor"], p["about_date"]) == ("email", 20_000, "2026-04-24")
    assert p["notice_id"] == f"{aid}:promise_confirmation:r-promise-6"
    (pl,) = purposeful(found, "plan_confirmation")
    assert (pl["channel"], pl["plan_every"], pl["about_amount_minor"]) == ("sms", "week", 5_000)
    (ack,) = purposeful(found, "dispute_acknowledgement")
    assert ack["notice_id"] == f"{aid}:dispute_acknowledgement:r-dispute-6"


async def test_a_promise_recorded_and_a_dispute_marked_by_a_person_are_confirmed(engine) -> None:
    aid = "C-7"
    await handle(engine, NOON_NY, account(aid, due_date=date(2026, 4, 1)))

    def override(oid: str, action: str, **kw: Any) -> OverrideRequested:
        return OverrideRequested(
            account_id=aid,
            override_id=oid,
            action=action,  # type: ignore[arg-type]
            actor="ana",
            role="collector",
            requested_at=NOON_NY,
            **kw,
        )

    past = override("o-bad", "record_promise", promise_date=date(2026, 4, 1))  # rejected: already past
    good = override(
        "o-promise", "record_promise", promise_date=date(2026, 4, 30), promise_amount_minor=15_000
    )
    disp = override("o-dispute", "mark_dispute")
    for ev in (past, good, good, disp):
        await handle(engine, NOON_NY, ev)
    found = await notices(engine, aid, None)
    (p,) = purposeful(found, "promise_confirmation")
    assert (p["notice_id"], p["about_date"]) == (f"{aid}:promise_confirmation:o-promise", "2026-04-30")
    (ack,) = purposeful(found, "dispute_acknowledgement")
    assert ack["notice_id"] == f"{aid}:dispute_acknowledgement:o-dispute"


async def test_switched_off_confirmations_are_not_sent(engine) -> None:
    from dataclasses import replace

    aid = "C-8"
    d = deps(NOON_NY)
    d.notify = replace(d.notify, confirmations=frozenset({"dispute_acknowledgement"}))
    async with transaction(engine, SCHEMA, "segmenter") as tx:
        await make_handler(d)([envelope(account(aid, due_date=date(2026, 4, 1)))], tx)
    async with transaction(engine, SCHEMA, "segmenter") as tx:
        await make_handler(d)([envelope(payment(aid, NOON_NY), "payment:stripe:pi_8")], tx)
    assert purposeful(await notices(engine, aid, None), "payment_receipt") == []
    async with engine.connect() as c:
        n = (
            await c.execute(
                text("SELECT count(*) FROM segmenter.customer_notices WHERE account_id = :a"), {"a": aid}
            )
        ).scalar()
    assert n == 0


async def test_a_confirmation_stands_on_the_account_timeline_with_its_time(fresh_database_url) -> None:
    import asyncio

    from arrears_escalation.timeline.service import record_activity, timeline

    url = fresh_database_url("escalation_confirmations")
    await asyncio.to_thread(upgrade, url, "escalation")
    e = make_engine(url)
    sent_at = NOON_NY + timedelta(minutes=3)

    def outcome(purpose: str, channel: str, status: DeliveryStatus, reason: str | None = None) -> MessageSent:
        return MessageSent(
            account_id="T-1",
            notice_id=f"T-1:{purpose}:x",
            channel=channel,
            status=status,
            provider="quo",
            to="+14155550100",
            tier=Tier.REMINDER,
            step=0,
            purpose=purpose,  # type: ignore[arg-type]
            reason=reason,
            sent_at=sent_at,
        )

    try:
        async with e.begin() as c:
            await record_activity(
                c,
                [
                    (outcome("payment_receipt", "sms", DeliveryStatus.SENT), "ce-1"),
                    (
                        outcome("dispute_acknowledgement", "email", DeliveryStatus.SUPPRESSED, "opted_out"),
                        "ce-2",
                    ),
                ],
            )
        async with e.connect() as c:
            items, _ = await timeline(c, "T-1")
    finally:
        await e.dispose()
    summaries = {(i.at, i.summary) for i in items}
    assert (sent_at, "Payment receipt sent by SMS") in summaries
    assert (sent_at, "Dispute acknowledgement suppressed by email (opted_out)") in summaries
