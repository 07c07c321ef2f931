"""Failed-payment retries (issue #18 item 3), on a real PostgreSQL: a failed payment puts the account at risk,
scheduled retries ask the customer to pay on their channel (through the compliance gate, with the company's
manual payment option), a payment clears it and cancels what is pending, and after the last retry the payment
goes to people (escalation's `payment_recovery` task). Time is advanced with the segmenter's fixed clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from arrears_segmenter.payments.models import CustomerNotices
from arrears_shared.clock import Clock
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.events import PaymentFailed, PaymentRetryChanged
from segmenter.support import account, decisions, deps, handle, notices, run_tick
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

NOON_NY = datetime(2026, 4, 15, 16, 0, tzinfo=UTC)  # 12:00 in New York: inside contact hours
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def segmenter_url(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("segmenter_retries")
    upgrade(url, "segmenter")
    return url


@pytest.fixture
async def engine(segmenter_url: str) -> AsyncIterator[AsyncEngine]:
    e = make_engine(segmenter_url)
    yield e
    await e.dispose()


def at(t: datetime, **notify: Any) -> Any:
    d = deps(t)
    d.notify = replace(CustomerNotices(), pay_with="call 555-0100 or pay at the office", **notify)
    return d


def failed(aid: str, failure: str, when: datetime, payment: str = "pi_1") -> PaymentFailed:
    return PaymentFailed(
        account_id=aid,
        provider="stripe",
        payment_id=payment,
        failure_id=failure,
        amount_minor=12_500,
        currency="USD",
        failure_code="insufficient_funds",
        balance_minor=50_000,
        failed_at=when,
    )


async def retry_events(engine: AsyncEngine, aid: str) -> list[dict[str, Any]]:
    async with engine.connect() as c:
        rows = await c.execute(
            text("SELECT headers, value FROM segmenter.outbox WHERE topic = 'account-changed' ORDER BY id")
        )
        out = []
        for headers, value in rows:
            h = dict(headers)
            data = json.loads(bytes(value))
            if h["ce_type"] == PaymentRetryChanged.ce_type and data["account_id"] == aid:
                out.append({"ce_id": h["ce_id"], **data})
        return out


async def retry_row(engine: AsyncEngine, aid: str) -> dict[str, Any]:
    async with engine.connect() as c:
        row = (
            (
                await c.execute(
                    text("SELECT * FROM segmenter.payment_retries WHERE account_id = :a"), {"a": aid}
                )
            )
            .mappings()
            .one()
        )
        return dict(row)


def retries_only(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [n for n in found if n["purpose"] == "payment_retry"]


async def test_a_failed_payment_is_retried_on_schedule_three_times_then_goes_to_people(engine) -> None:
    aid = "PR-1"
    await handle(engine, at(NOON_NY), account(aid, due_date=date(2026, 4, 1)))
    dunning_before = [n for n in await notices(engine, aid, None) if n["purpose"] == "dunning"]
    await handle(engine, at(NOON_NY), failed(aid, "ch_1", NOON_NY))
    row = await retry_row(engine, aid)
    assert (row["state"], row["failures"], row["retry_count"]) == ("at_risk", 1, 0)
    assert row["next_at"] == NOON_NY + 2 * DAY
    (first,) = await retry_events(engine, aid)
    assert (first["status"], first["at_risk"], first["retries_max"]) == ("at_risk", True, 3)

    await run_tick(engine, at(NOON_NY + DAY))  # not due yet
    assert retries_only(await notices(engine, aid, None)) == []
    for n in (1, 2, 3):
        now = NOON_NY + 2 * n * DAY
        await run_tick(engine, at(now))
        await run_tick(engine, at(now))  # a second tick (another replica, a restart) sends nothing more
        sent = retries_only(await notices(engine, aid, None))
        assert len(sent) == n
        last = sent[-1]
        assert last["notice_id"] == f"{aid}:payment_retry:stripe:pi_1:{n}"
        assert (last["retry"], last["retries_max"], last["channel"]) == (n, 3, "sms")
        assert last["pay_with"] == "call 555-0100 or pay at the office"
        assert last["about_amount_minor"] == 12_500 and last["priority"] > 0
        assert (await retry_row(engine, aid))["retry_count"] == n
    assert (await retry_row(engine, aid))["state"] == "at_risk"
    await run_tick(engine, at(NOON_NY + 8 * DAY - timedelta(minutes=1)))
    assert (await retry_row(engine, aid))["state"] == "at_risk"  # the last retry's window is still open
    await run_tick(engine, at(NOON_NY + 8 * DAY))
    row = await retry_row(engine, aid)
    assert (row["state"], row["retry_count"], row["next_at"]) == ("exhausted", 3, None)
    statuses = [e["status"] for e in await retry_events(engine, aid)]
    assert statuses == ["at_risk", "retry_sent", "retry_sent", "retry_sent", "exhausted"]
    await run_tick(engine, at(NOON_NY + 20 * DAY))
    assert len(retries_only(await notices(engine, aid, None))) == 3  # never a fourth
    # retries are not dunning steps: the dunning plan is what it was
    assert [n for n in await notices(engine, aid, None) if n["purpose"] == "dunning"][
        : len(dunning_before)
    ] == (dunning_before)
    assert any(d["rule_id"] == "payment_retry.exhausted" for d in await decisions(engine, aid))


async def test_a_payment_clears_the_risk_and_cancels_pending_retries(engine) -> None:
    aid = "PR-2"
    await handle(engine, at(NOON_NY), account(aid, due_date=date(2026, 4, 1)))
    await handle(engine, at(NOON_NY), failed(aid, "ch_2", NOON_NY))
    await run_tick(engine, at(NOON_NY + 2 * DAY))
    assert len(retries_only(await notices(engine, aid, None))) == 1
    paid = account(
        aid,
        change="payment",
        source="payment",
        balance_minor=37_500,
        last_payment_minor=12_500,
        last_payment_date=date(2026, 4, 18),
        content_hash="h2",
        as_of=NOON_NY + 3 * DAY,
    )
    await handle(engine, at(NOON_NY + 3 * DAY), paid)
    row = await retry_row(engine, aid)
    assert (row["state"], row["next_at"]) == ("cleared", None)
    events = await retry_events(engine, aid)
    assert (events[-1]["status"], events[-1]["at_risk"]) == ("cleared", False)
    for days in (4, 6, 8, 10):
        await run_tick(engine, at(NOON_NY + days * DAY))
    assert len(retries_only(await notices(engine, aid, None))) == 1  # nothing after the payment
    assert (await retry_row(engine, aid))["state"] == "cleared"


async def test_the_same_failure_counts_once_and_one_after_the_last_retry_exhausts_at_once(engine) -> None:
    aid = "PR-3"
    await handle(engine, at(NOON_NY), account(aid, due_date=date(2026, 4, 1)))
    await handle(engine, at(NOON_NY), failed(aid, "ch_a", NOON_NY))
    await handle(engine, at(NOON_NY), failed(aid, "ch_a", NOON_NY))  # the gateway reported it twice
    assert (await retry_row(engine, aid))["failures"] == 1
    for n in (1, 2, 3):
        await run_tick(engine, at(NOON_NY + 2 * n * DAY))
    await handle(engine, at(NOON_NY + 7 * DAY), failed(aid, "ch_b", NOON_NY + 7 * DAY))
    row = await retry_row(engine, aid)
    assert (row["state"], row["failures"], row["retry_count"]) == ("exhausted", 2, 3)


async def test_a_retry_due_at_night_waits_for_contact_hours_and_a_dispute_stops_retries(engine) -> None:
    aid = "PR-4"
    night = datetime(2026, 4, 15, 5, 0, tzinfo=UTC)  # 01:00 in New York
    await handle(engine, at(night - 2 * DAY), account(aid, due_date=date(2026, 4, 1)))
    await handle(engine, at(night - 2 * DAY), failed(aid, "ch_n", night - 2 * DAY))
    await run_tick(engine, at(night))
    (n1,) = retries_only(await notices(engine, aid, None))
    assert datetime.fromisoformat(n1["due_at"]) == datetime(2026, 4, 15, 12, 0, tzinfo=UTC)  # 08:00 NY
    assert any(
        d["outcome"] == "deferred" and d["notice_id"] == n1["notice_id"] for d in await decisions(engine, aid)
    )
    from arrears_shared.events import Intent
    from segmenter.support import reply

    await handle(engine, at(night + DAY), reply(aid, Intent.DISPUTE, reply_id="r-disp-4"))
    await run_tick(engine, at(night + 2 * DAY))
    assert len(retries_only(await notices(engine, aid, None))) == 1  # no money asked while disputed
    assert any(d["rule_id"] == "payment_retry.disputed" for d in await decisions(engine, aid))


async def test_exhausted_retries_give_people_a_recovery_task_once(fresh_database_url) -> None:
    from arrears_escalation.cases.handlers import make_handler
    from arrears_escalation.deps import Deps as EscalationDeps
    from arrears_escalation.settings import EscalationSettings
    from arrears_shared.stream.transaction import transaction
    from segmenter.support import envelope

    url = fresh_database_url("escalation_retries")
    await asyncio.to_thread(upgrade, url, "escalation")
    settings = EscalationSettings(service_name="escalation", database_url=url)
    d = EscalationDeps.from_settings(settings)
    d = replace(d, clock=Clock(fixed=NOON_NY))
    ev = PaymentRetryChanged(
        account_id="PR-5",
        provider="stripe",
        payment_id="pi_5",
        status="exhausted",
        at_risk=True,
        failures=1,
        retry_count=3,
        retries_max=3,
        amount_minor=9_900,
        currency="USD",
        reason="3 retries passed unpaid",
        changed_at=NOON_NY,
    )
    e = make_engine(url)
    try:
        for ce_id in ("payment-retry:stripe:pi_5:exhausted:window", "replayed-under-another-id"):
            async with transaction(e, "escalation", "escalation") as tx:
                await make_handler(d)([envelope(ev, ce_id)], tx)
        async with e.connect() as c:
            open_tasks = (
                (await c.execute(text("SELECT status FROM escalation.tasks WHERE account_id = 'PR-5'")))
                .scalars()
                .all()
            )
        assert open_tasks == ["open"]
        paid = ev.model_copy(update={"status": "cleared", "at_risk": False, "reason": "payment received"})
        async with transaction(e, "escalation", "escalation") as tx:
            await make_handler(d)([envelope(paid, "payment-retry:stripe:pi_5:cleared:x")], tx)
        async with e.connect() as c:
            tasks = (
                await c.execute(
                    text(
                        "SELECT kind, team, priority, detail, status FROM escalation.tasks WHERE account_id = 'PR-5'"
                    )
                )
            ).all()
            timeline = (
                await c.execute(
                    text("SELECT kind, summary FROM escalation.activity WHERE account_id = 'PR-5'")
                )
            ).all()
    finally:
        await e.dispose()
    assert [(t.kind, t.team, t.priority, t.status) for t in tasks] == [
        ("payment_recovery", "recovery", "high", "done")
    ]
    assert "still unpaid after 3 retries" in tasks[0].detail
    assert {t.kind for t in timeline} == {"payment.retry.exhausted", "payment.retry.cleared"}


async def test_a_failure_and_a_payment_in_one_batch_leave_the_account_clear(engine) -> None:
    aid = "PR-6"
    await handle(engine, at(NOON_NY), account(aid, due_date=date(2026, 4, 1)))
    paid = account(
        aid,
        change="payment",
        source="payment",
        balance_minor=37_500,
        last_payment_minor=12_500,
        last_payment_date=date(2026, 4, 15),
        content_hash="h6",
        as_of=NOON_NY + timedelta(minutes=5),
    )
    await handle(engine, at(NOON_NY), failed(aid, "ch_6", NOON_NY), paid)  # one consumer batch, in order
    assert (await retry_row(engine, aid))["state"] == "cleared"
    await run_tick(engine, at(NOON_NY + 3 * DAY))
    assert retries_only(await notices(engine, aid, None)) == []
