"""Segmenter domain logic against real Postgres: projection, timers, the gate, idempotency."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from arrears_segmenter.accounts.service import account_view
from arrears_segmenter.timers.scheduled import tick
from arrears_shared.db.engine import make_engine
from arrears_shared.events import DeliveryStatus, Intent, MessageSent, Tier
from sqlalchemy import text

from .support import account, decisions, deps, handle, notices, reply, run_tick, timers

NOON_NY = datetime(2026, 4, 15, 16, 0, tzinfo=UTC)  # 12:00 EDT, dpd 45 for due 1 Mar


async def test_first_appearance_sends_the_first_step_on_every_allowed_channel(engine) -> None:
    d = deps(NOON_NY)
    await handle(engine, d, account("A-first"))
    assert await run_tick(engine, d) == 1
    ns = await notices(engine, "A-first")
    # dpd 45 already meets the firm threshold, but the tone starts at the first tier (start_tier: first)
    assert [(n["step"], n["tier"], n["channel"]) for n in ns] == [
        (1, "reminder", "sms"),
        (1, "reminder", "email"),
    ]
    assert ns[0]["ce_id"] == ns[0]["notice_id"] == "A-first:default:v1:s1:c0:sms"
    assert (ns[0]["days_past_due"], ns[0]["aging_bucket"], ns[0]["to"]) == (45, "31-60", "+14155550100")
    pending = [t for t in await timers(engine, "A-first") if t["state"] == "pending"]
    assert [(t["step"], t["due_at"]) for t in pending] == [(2, NOON_NY + timedelta(days=7))]
    d.clock.set(NOON_NY + timedelta(days=7))
    assert await run_tick(engine, d) == 1
    # next: final at dpd 60 = 30 Apr 00:00 EDT, deferred by quiet hours to 08:00 EDT when it fires
    pending = [t for t in await timers(engine, "A-first") if t["state"] == "pending"]
    assert [(t["step"], t["due_at"]) for t in pending] == [(3, datetime(2026, 4, 30, 4, tzinfo=UTC))]
    d.clock.set(datetime(2026, 4, 30, 4, tzinfo=UTC))
    assert await run_tick(engine, d) == 1
    assert len(await notices(engine, "A-first")) == 4  # deferred, not sent at midnight
    (t,) = [t for t in await timers(engine, "A-first") if t["state"] == "pending"]
    assert t["due_at"] == datetime(2026, 4, 30, 8, tzinfo=ZoneInfo("America/New_York"))
    d.clock.set(t["due_at"])
    await run_tick(engine, d)
    ns = await notices(engine, "A-first")
    assert [(n["step"], n["tier"], n["channel"]) for n in ns[2:]] == [
        (2, "firm", "sms"),
        (2, "firm", "email"),
        (3, "final", "sms"),
        (3, "final", "email"),
    ]
    assert ns[4]["priority"] > ns[2]["priority"] > ns[0]["priority"]
    async with engine.connect() as c:
        view = await account_view(c, "A-first", d, d.clock.now())
    assert (
        view is not None
        and view.last_step == 3
        and [(c.channel, c.address_masked != "+14155550100") for c in view.channels][0] == ("sms", True)
    )
    # sequence complete: nothing more, ever
    d.clock.advance(timedelta(days=90))
    assert await run_tick(engine, d) == 0


async def test_not_yet_due_account_gets_a_reminder_at_0800_local_on_day_one(engine) -> None:
    d = deps(datetime(2026, 2, 20, 15, tzinfo=UTC))
    await handle(engine, d, account("A-fresh", timezone="America/Los_Angeles", region="CA"))
    assert await run_tick(engine, d) == 0
    d.clock.set(datetime(2026, 3, 2, 8, tzinfo=UTC))  # 00:00 PST 2 Mar: dpd 1, quiet hours
    await run_tick(engine, d)
    assert await notices(engine, "A-fresh") == []
    rows = await decisions(engine, "A-fresh")
    deferred = [r for r in rows if r["outcome"] == "deferred"]
    assert deferred and deferred[0]["rule_id"] == "quiet_hours.US"
    eight = datetime(2026, 3, 2, 8, tzinfo=ZoneInfo("America/Los_Angeles"))
    assert deferred[0]["defer_until"] == eight
    d.clock.set(eight - timedelta(seconds=1))
    await run_tick(engine, d)
    assert await notices(engine, "A-fresh") == []
    d.clock.set(eight)
    await run_tick(engine, d)
    ns = await notices(engine, "A-fresh")
    assert {(n["tier"], n["channel"], n["days_past_due"]) for n in ns} == {
        ("reminder", "sms", 1),
        ("reminder", "email", 1),
    }


async def test_two_concurrent_tick_loops_never_duplicate_a_notice(segmenter_url) -> None:
    d = deps(NOON_NY)
    e1, e2 = make_engine(segmenter_url), make_engine(segmenter_url)
    try:
        ids = [
            f"C-{i:04d}" for i in range(140)
        ]  # enough batches that all four loops get some, even on a busy machine
        await handle(e1, d, *[account(a) for a in ids])
        d.timer_batch = 7  # many small concurrent batches

        async def loop(e) -> int:  # type: ignore[no-untyped-def]
            total = 0
            while (n := await tick(e, "segmenter", "segmenter", d)) > 0:
                total += n
            return total

        done = await asyncio.gather(loop(e1), loop(e2), loop(e1), loop(e2))
        assert sum(done) >= len(ids)  # (plus timers of earlier tests in this module that fell due)
        assert min(done) > 0  # they really ran concurrently
        # a replayed / re-armed timer cannot emit again either
        async with e1.begin() as c:
            await c.execute(
                text("UPDATE segmenter.timers SET state='pending' WHERE step=2 AND account_id LIKE 'C-%'")
            )
        await loop(e1)
        all_n = [n for n in await notices(e1) if n["account_id"].startswith("C-")]
        assert len(all_n) == 2 * len(ids)
        assert len({n["ce_id"] for n in all_n}) == len(all_n)
    finally:
        await e1.dispose()
        await e2.dispose()


async def test_stop_ends_sms_forever_but_email_continues(engine) -> None:
    d = deps(datetime(2026, 3, 5, 17, tzinfo=UTC))  # dpd 4: reminder
    await handle(engine, d, account("A-stop"))
    await run_tick(engine, d)
    assert {n["channel"] for n in await notices(engine, "A-stop")} == {"sms", "email"}
    await handle(engine, d, reply("A-stop", Intent.OPT_OUT, "sms"))
    # a later sheet update (consent still "yes" in the sheet) must not resurrect SMS
    await handle(
        engine,
        d,
        account("A-stop", change="updated", content_hash="h2", as_of=datetime(2026, 3, 6, tzinfo=UTC)),
    )
    for _ in range(6):
        d.clock.advance(timedelta(days=15))
        await run_tick(engine, d)
    later = (await notices(engine, "A-stop"))[2:]
    assert [(n["tier"], n["channel"]) for n in later] == [("firm", "email"), ("final", "email")]
    supp = [r for r in await decisions(engine, "A-stop") if r["outcome"] == "suppressed"]
    assert {r["rule_id"] for r in supp} == {"opt_out.sms"} and len(supp) == 2


async def test_email_opt_out_and_permanent_failure_block_their_channel(engine) -> None:
    d = deps(datetime(2026, 3, 5, 17, tzinfo=UTC))
    await handle(engine, d, account("A-eml"), account("A-bad"))
    await handle(engine, d, reply("A-eml", Intent.OPT_OUT, "email", from_address="ada@example.com"))
    await handle(
        engine,
        d,
        MessageSent(
            account_id="A-bad",
            notice_id="x",
            channel="sms",
            status=DeliveryStatus.FAILED,
            provider="quo",
            to="+14155550100",
            tier=Tier.REMINDER,
            step=1,
            reason="invalid number",
            permanent=True,
            sent_at=d.clock.now(),
        ),
    )
    await run_tick(engine, d)
    assert [n["channel"] for n in await notices(engine, "A-eml")] == ["sms"]
    assert [n["channel"] for n in await notices(engine, "A-bad")] == ["email"]


async def test_payment_cancels_pending_timers_within_one_event(engine) -> None:
    d = deps(datetime(2026, 3, 5, 17, tzinfo=UTC))
    await handle(engine, d, account("A-paid"))
    await run_tick(engine, d)
    assert any(t["state"] == "pending" for t in await timers(engine, "A-paid"))
    await handle(
        engine,
        d,
        account(
            "A-paid",
            change="payment",
            source="payment",
            balance_minor=0,
            content_hash="h3",
            as_of=datetime(2026, 3, 6, tzinfo=UTC),
        ),
    )
    ts = await timers(engine, "A-paid")
    assert not any(t["state"] == "pending" for t in ts)
    assert ts[-1]["reason"] == "balance_settled"
    d.clock.advance(timedelta(days=120))
    await run_tick(engine, d)
    assert len(await notices(engine, "A-paid")) == 2
    # removed and status=closed behave the same
    await handle(
        engine, d, account("A-rm", due_date=date(2026, 7, 1)), account("A-cl", due_date=date(2026, 7, 1))
    )
    await handle(
        engine,
        d,
        account("A-rm", change="removed", content_hash="r", as_of=datetime(2026, 7, 2, tzinfo=UTC)),
        account("A-cl", status="closed", content_hash="c", as_of=datetime(2026, 7, 2, tzinfo=UTC)),
    )
    for a in ("A-rm", "A-cl"):
        assert all(t["state"] == "cancelled" for t in await timers(engine, a))


async def test_promise_to_pay_pauses_until_the_date_and_dispute_stops(engine) -> None:
    d = deps(datetime(2026, 3, 5, 17, tzinfo=UTC))
    await handle(engine, d, account("A-ptp"), account("A-dsp"))
    await run_tick(engine, d)
    await handle(
        engine,
        d,
        reply("A-ptp", Intent.PROMISE_TO_PAY, promise_date=date(2026, 4, 20)),
        reply("A-dsp", Intent.DISPUTE),
    )
    (t,) = [t for t in await timers(engine, "A-ptp") if t["state"] == "pending"]
    assert t["due_at"] == datetime(2026, 4, 21, 4, tzinfo=UTC)  # day after the promise, local midnight
    assert not any(t["state"] == "pending" for t in await timers(engine, "A-dsp"))
    d.clock.set(datetime(2026, 4, 20, 16, tzinfo=UTC))
    await run_tick(engine, d)
    assert len(await notices(engine, "A-ptp")) == 2
    d.clock.set(datetime(2026, 4, 21, 13, tzinfo=UTC))  # 09:00 EDT, promise broken
    await run_tick(engine, d)
    assert [n["tier"] for n in (await notices(engine, "A-ptp"))[2:]] == ["firm", "firm"]
    d.clock.advance(timedelta(days=200))
    await run_tick(engine, d)
    assert len(await notices(engine, "A-dsp")) == 2


async def test_unknown_zone_is_flagged_and_uses_utc_for_aging(engine) -> None:
    d = deps(datetime(2026, 3, 5, 17, tzinfo=UTC))
    await handle(engine, d, account("A-notz", timezone=None, region=None))
    async with engine.connect() as c:
        v = await account_view(c, "A-notz", d, d.clock.now())
    assert v is not None and v.timezone_unknown and v.days_past_due == 4 and v.aging_bucket == "1-30"
    await run_tick(engine, d)  # 17:00Z = 09:00 in Los Angeles: every continental zone allows
    ns = await notices(engine, "A-notz")
    assert len(ns) == 2 and ns[0]["timezone"] is None


async def test_an_account_seen_first_in_a_reply_has_no_currency_until_the_sheet_names_it(engine) -> None:
    d = deps(NOON_NY)
    await handle(engine, d, reply("A-early", Intent.OPT_OUT, "sms"))
    async with engine.connect() as c:
        early = await account_view(c, "A-early", d, d.clock.now())
    assert early is not None and not early.known and early.currency is None
    assert await timers(engine, "A-early") == []  # nothing is planned for an account the sheet has not named
    await handle(engine, d, account("A-early"))
    async with engine.connect() as c:
        known = await account_view(c, "A-early", d, d.clock.now())
    assert known is not None and known.known and known.currency == "USD"
    assert [c.opted_out for c in known.channels if c.channel == "sms"] == [True]  # the early opt-out was kept
