"""A plan and an accepted settlement, followed through (issue #19 review): paying instalment 1 of a plan
keeps the sequence held until the plan's last day (a payment no longer ends a plan's hold), a missed
instalment (escalation's `resume_dunning`) resumes it; a settlement paid in full stops the sequence for
good (stop reason `settled`) though a balance is left. Replays change nothing. Real Postgres, the
segmenter's own handler and timer tick."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from arrears_segmenter.accounts.account import Account
from arrears_segmenter.overrides.actions import apply
from arrears_shared.events import OverrideRequested
from sqlalchemy import text

from .support import SCHEMA, account, decisions, deps, handle, notices, run_tick, stopped_events, timers

NOON_NY = datetime(2026, 4, 15, 16, 0, tzinfo=UTC)  # dpd 45 for due 1 Mar: step 1 is due at once


def promise(aid: str, oid: str, **kw: Any) -> OverrideRequested:
    return OverrideRequested.model_validate(
        {
            "account_id": aid,
            "override_id": oid,
            "action": "record_promise",
            "actor": "portal:debtor:v1",
            "role": "system",
            "requested_at": NOON_NY,
        }
        | kw
    )


def payment(aid: str, amount: int, balance: int, at: datetime) -> Any:
    return account(
        aid,
        change="payment",
        source="payment",
        balance_minor=balance,
        last_payment_minor=amount,
        last_payment_date=at.date(),
        content_hash=f"paid-{amount}-{balance}",
        as_of=at,
    )


def resume(aid: str, oid: str, at: datetime) -> OverrideRequested:
    return OverrideRequested(
        account_id=aid,
        override_id=oid,
        action="resume_dunning",
        actor="escalation",
        role="system",
        reason="promise broken",
        requested_at=at,
    )


async def hold_of(engine: Any, aid: str) -> Any:
    async with engine.connect() as c:
        return (
            await c.execute(
                text(
                    f"SELECT hold, promise_hold_until, promise_plan, settlement FROM {SCHEMA}.accounts "
                    "WHERE account_id = :a"
                ),
                {"a": aid},
            )
        ).one()


async def test_paying_instalment_one_keeps_the_plan_held_and_a_missed_instalment_resumes_dunning(
    engine: Any,
) -> None:
    aid = "PLAN-FT-1"
    d = deps(NOON_NY)
    await handle(engine, d, account(aid))
    assert await run_tick(engine, d) == 1  # step 1 now; step 2 would be due 22 Apr
    assert len(await notices(engine, aid)) == 2
    plan = promise(
        aid,
        "o-plan",
        promise_date=date(2026, 4, 20),
        promise_amount_minor=16_667,
        promise_plan_every="week",
        plan_instalments=3,
    )
    await handle(engine, d, plan)
    # instalment 1 paid on its day
    d.clock.set(datetime(2026, 4, 20, 15, tzinfo=UTC))
    paid_1 = payment(aid, 16_667, 33_333, d.clock.now())
    await handle(engine, d, paid_1)
    row = await hold_of(engine, aid)
    assert (row.hold, row.promise_plan["last"]) == ("promise", "2026-05-04")
    (t,) = [t for t in await timers(engine, aid) if t["state"] == "pending"]
    assert (t["step"], t["due_at"]) == (2, datetime(2026, 5, 5, tzinfo=ZoneInfo("America/New_York")))
    # a week on (past step 2's own day, before instalment 2 is missed): nothing is sent
    d.clock.set(datetime(2026, 4, 27, 16, tzinfo=UTC))
    await run_tick(engine, d)
    # replays: the plan and the payment again change nothing
    await handle(engine, d, plan, paid_1)
    await run_tick(engine, d)
    assert len(await notices(engine, aid)) == 2
    assert (await hold_of(engine, aid)).hold == "promise"
    # instalment 2 (27 Apr) missed: escalation breaks the promise and resumes the sequence
    d.clock.set(datetime(2026, 4, 29, 14, tzinfo=UTC))
    await handle(engine, d, resume(aid, "o-resume", d.clock.now()))
    await run_tick(engine, d)
    sent = await notices(engine, aid)
    assert [n["step"] for n in sent] == [1, 1, 2, 2]
    row = await hold_of(engine, aid)
    assert (row.hold, row.promise_plan) == (None, None)


async def test_a_one_off_promise_still_ends_with_a_payment(engine: Any) -> None:
    aid = "PLAN-FT-2"
    d = deps(NOON_NY)
    await handle(engine, d, account(aid))
    await run_tick(engine, d)
    await handle(
        engine, d, promise(aid, "o-one", promise_date=date(2026, 4, 20), promise_amount_minor=10_000)
    )
    d.clock.set(datetime(2026, 4, 20, 15, tzinfo=UTC))
    await handle(engine, d, payment(aid, 10_000, 40_000, d.clock.now()))
    assert (await hold_of(engine, aid)).hold is None


async def test_a_settlement_paid_in_full_stops_the_sequence_for_good(engine: Any) -> None:
    aid = "SETTLE-FT-1"
    d = deps(NOON_NY)
    await handle(engine, d, account(aid))
    assert await run_tick(engine, d) == 1
    accept = promise(
        aid,
        "o-accept",
        promise_date=date(2026, 4, 30),
        promise_amount_minor=30_000,
        settlement_offer_id="so-1",
    )
    await handle(engine, d, accept)
    # paid in two parts: the first does not end the hold, the second settles it
    d.clock.set(datetime(2026, 4, 18, 15, tzinfo=UTC))
    part = payment(aid, 10_000, 40_000, d.clock.now())
    await handle(engine, d, part)
    await handle(engine, d, part, accept)  # replays: counted once, the acceptance keeps what was paid
    row = await hold_of(engine, aid)
    assert (row.hold, row.settlement["paid_minor"], row.settlement["settled_at"]) == ("promise", 10_000, None)
    d.clock.set(datetime(2026, 4, 22, 15, tzinfo=UTC))
    rest = payment(aid, 20_000, 20_000, d.clock.now())
    await handle(engine, d, rest)
    await handle(engine, d, rest, part, accept)
    row = await hold_of(engine, aid)
    assert row.settlement["paid_minor"] == 30_000 and row.settlement["settled_at"] is not None
    assert [t for t in await timers(engine, aid) if t["state"] == "pending"] == []
    assert [r["rule_id"] for r in await decisions(engine, aid)].count("settlement.paid") == 1
    # the dispatchers are told, once, on notice-due: what they still queue from before is suppressed
    told = await stopped_events(engine, aid)
    assert [(e["reason"], datetime.fromisoformat(e["account_as_of"])) for e in told] == [
        ("settled", rest.as_of)
    ]
    # the pay-by day passes, months of ticks, a new row from the sheet: nothing is sent again
    for days in (10, 30, 90):
        d.clock.set(datetime(2026, 4, 22, 15, tzinfo=UTC) + timedelta(days=days))
        await run_tick(engine, d)
    await handle(engine, d, account(aid, balance_minor=20_000, content_hash="h2", as_of=d.clock.now()))
    await run_tick(engine, d)
    assert len(await notices(engine, aid)) == 2  # step 1 only, from before the acceptance
    assert (await hold_of(engine, aid)).settlement["settled_at"] is not None


async def test_a_settlement_not_paid_by_its_day_is_broken_and_dunning_resumes(engine: Any) -> None:
    aid = "SETTLE-FT-2"
    d = deps(NOON_NY)
    await handle(engine, d, account(aid))
    await run_tick(engine, d)
    await handle(
        engine,
        d,
        promise(
            aid,
            "o-acc",
            promise_date=date(2026, 4, 20),
            promise_amount_minor=30_000,
            settlement_offer_id="so-2",
        ),
    )
    d.clock.set(datetime(2026, 4, 22, 14, tzinfo=UTC))
    await handle(engine, d, resume(aid, "o-res", d.clock.now()))
    await run_tick(engine, d)
    assert [n["step"] for n in await notices(engine, aid)] == [1, 1, 2, 2]
    assert (await hold_of(engine, aid)).settlement is None


def test_a_broken_settlement_is_forgotten_even_after_its_hold_lapsed() -> None:
    """The hold ended by itself after the pay-by day; escalation's later `resume_dunning` is `ignored` for
    the hold but still drops the unpaid offer, so a late payment cannot settle the account."""
    acct = replace(
        Account.new("A-lapsed", NOON_NY), known=True, timezone="America/New_York", balance_minor=50_000
    )
    accept = promise(
        "A-lapsed",
        "o-1",
        promise_date=date(2026, 4, 20),
        promise_amount_minor=30_000,
        settlement_offer_id="so-9",
    )
    apply(acct, accept, None, NOON_NY, band="low")  # type: ignore[arg-type]
    assert acct.settlement is not None and acct.hold == "promise"
    acct.hold = None  # the timer loop ended it the day after the pay-by day
    later = datetime(2026, 4, 23, 14, tzinfo=UTC)
    assert apply(acct, resume("A-lapsed", "o-2", later), None, later, band="low").outcome == "ignored"  # type: ignore[arg-type]
    assert acct.settlement is None
