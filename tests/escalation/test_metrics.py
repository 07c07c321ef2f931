"""Collection metrics from real events through the handler, snapshotted once per day."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from arrears_console.web.pages.kpis import KPIS
from arrears_escalation.cases.scheduled import tick
from arrears_escalation.collection.scheduled import snapshot_if_due
from arrears_escalation.collection.service import compute, read, snapshot
from arrears_escalation.deps import Deps
from arrears_escalation.tasks.assignment import Agent
from arrears_escalation.tasks.service import complete_task, list_tasks
from arrears_shared.clock import Clock
from arrears_shared.events import (
    AccountChanged,
    DeliveryStatus,
    Intent,
    MessageSent,
    ReplyReceived,
    Tier,
)
from sqlalchemy import text

from .test_escalation import handle

D = date(2026, 8, 10)


def at(h: int, day: date = D) -> datetime:
    return datetime(day.year, day.month, day.day, h, tzinfo=UTC)


def sent(aid: str, campaign: str | None) -> MessageSent:
    return MessageSent(
        account_id=aid,
        notice_id=f"{aid}:n1",
        channel="sms",
        status=DeliveryStatus.SENT,
        provider="quo",
        to="+14155550100",
        tier=Tier.REMINDER,
        step=1,
        campaign_id=campaign,
        sent_at=at(10),
    )


def replied(aid: str, intent: Intent, when: datetime, **kw: Any) -> ReplyReceived:
    return ReplyReceived(
        account_id=aid,
        reply_id=f"{aid}:{intent}",
        channel="sms",
        from_address="+14155550100",
        text="x",
        intent=intent,
        confidence=0.9,
        received_at=when,
        **kw,
    )


def payment(aid: str, paid: int, left: int, due: date) -> AccountChanged:
    return AccountChanged(
        account_id=aid,
        change="payment",
        source="payment",
        customer_name="X",
        balance_minor=left,
        currency="USD",
        due_date=due,
        last_payment_minor=paid,
        last_payment_date=D,
        content_hash=f"p{paid}",
        as_of=at(15),
    )


async def test_daily_metrics_by_bucket_campaign_collector_and_overall(engine) -> None:
    d = Deps(clock=Clock(fixed=at(9, D - timedelta(days=5))), agents=[Agent(id="cora", team="collectors")])
    await handle(
        engine,
        d,
        replied(
            "M-4", Intent.PROMISE_TO_PAY, at(9, D - timedelta(days=5)), promise_date=D + timedelta(days=2)
        ),
        replied(
            "M-5", Intent.PROMISE_TO_PAY, at(9, D - timedelta(days=5)), promise_date=D - timedelta(days=3)
        ),
    )
    d.clock.set(at(6))
    await tick(engine, "escalation", "escalation", d)  # M-5's promise is broken today (grace 1 day)
    d.clock.set(at(10))
    await handle(engine, d, sent("M-1", "c1"), sent("M-2", "c1"), sent("M-3", None))
    await handle(engine, d, replied("M-1", Intent.OTHER, at(12)))
    await handle(
        engine,
        d,
        payment("M-1", 10_000, 30_000, D - timedelta(days=45)),  # 31-60 bucket
        payment("M-4", 50_000, 0, D - timedelta(days=10)),  # 1-30 bucket, keeps M-4's promise on time
    )
    async with engine.connect() as c:
        [task] = await list_tasks(c, account_id="M-5")
    assert task.kind == "follow_up_promise" and task.assignee == "cora"
    async with engine.begin() as c:
        await complete_task(c, task.task_id, "called, new plan", at(16))

    async with engine.begin() as c:
        assert await snapshot(c, D) > 0
        assert await snapshot(c, D) == 0  # once per day
    async with engine.connect() as c:
        rows = await read(c, D, D)
    got = {(r["metric"], r["scope"], r["scope_id"]): r["value"] for r in rows}

    def near(key: tuple[str, str, str], expected: float) -> None:
        assert key in got and abs(got[key] - expected) < 1e-9, (key, got.get(key), expected)

    near(("collection_rate", "aging_bucket", "31-60"), 10_000 / 40_000)
    near(("collection_rate", "aging_bucket", "1-30"), 1.0)
    near(("collection_rate", "overall", "all"), 60_000 / 90_000)
    near(("recovery_rate", "overall", "all"), 60_000 / 90_000)
    near(("promise_fulfilment", "overall", "all"), 0.5)
    near(("promise_fulfilment", "collector", "cora"), 0.0)
    near(("promise_punctuality", "overall", "all"), 1.0)
    near(("automated_notification_rate", "overall", "all"), 3 / 4)
    near(("response_rate", "overall", "all"), 1 / 3)
    near(("response_rate", "campaign", "c1"), 1 / 2)
    near(("tasks_completed", "collector", "cora"), 1.0)


async def test_snapshot_if_due_runs_once_after_the_hour(engine) -> None:
    day_after = D + timedelta(days=30)
    async with engine.begin() as c:
        assert await snapshot_if_due(c, at(0, day_after), hour_utc=1) is False  # before the hour
        assert await snapshot_if_due(c, at(2, day_after), hour_utc=1) is True
        assert await snapshot_if_due(c, at(3, day_after), hour_utc=1) is False  # already done
        n = await c.execute(
            text("SELECT count(*) FROM escalation.metric_snapshots WHERE day = :d"),
            {"d": day_after - timedelta(days=1)},
        )
        assert n.scalar() > 0


E = date(2026, 6, 1)  # before every other test's activity here: the overall figures are this test's own


def account_state(aid: str, balance: int, due: date, when: datetime, **kw: Any) -> AccountChanged:
    return AccountChanged(
        account_id=aid,
        change=kw.pop("change", "created"),
        source=kw.pop("source", "sheet"),
        customer_name="X",
        balance_minor=balance,
        currency="USD",
        due_date=due,
        content_hash=f"{aid}-{balance}-{when.isoformat()}",
        as_of=when,
        **kw,
    )


async def test_collection_rate_by_campaign_and_collector_and_days_in_arrears_coverage(engine) -> None:
    d = Deps(clock=Clock(fixed=at(8, E - timedelta(days=20))), agents=[Agent(id="cora", team="collectors")])
    await handle(
        engine,
        d,
        account_state("K-1", 20_000, E - timedelta(days=40), at(8, E - timedelta(days=20))),
        account_state(
            "K-2", 7_000, E - timedelta(days=100), at(8, E - timedelta(days=20))
        ),  # never contacted
        account_state("K-3", 9_000, E + timedelta(days=10), at(8, E - timedelta(days=20))),  # not due yet
        account_state("K-4", 0, E - timedelta(days=50), at(8, E - timedelta(days=20))),  # nothing left
        account_state("K-5", 4_000, E - timedelta(days=10), at(8, E - timedelta(days=20))),
    )
    msg = sent("K-1", "c9").model_copy(update={"sent_at": at(10, E - timedelta(days=3))})
    await handle(engine, d, msg)
    d.clock.set(at(9, E - timedelta(days=2)))
    await handle(engine, d, replied("K-5", Intent.CALLBACK_REQUEST, at(9, E - timedelta(days=2))))
    async with engine.connect() as c:
        [task] = await list_tasks(c, account_id="K-5")
    assert task.kind == "call_back" and task.assignee == "cora"
    async with engine.begin() as c:
        await complete_task(c, task.task_id, "called", at(11, E - timedelta(days=1)))
    d.clock.set(at(15, E))
    await handle(
        engine,
        d,
        account_state("K-1", 15_000, E - timedelta(days=40), at(15, E), change="payment", source="payment",
                      last_payment_minor=5_000, last_payment_date=E),
        account_state("K-5", 3_000, E - timedelta(days=10), at(15, E), change="payment", source="payment",
                      last_payment_minor=1_000, last_payment_date=E),
    )  # fmt: skip

    async with engine.begin() as c:
        assert await snapshot(c, E) > 0
    async with engine.connect() as c:
        got = {(r["metric"], r["scope"], r["scope_id"]): r for r in await read(c, E, E)}

    def ratio(key: tuple[str, str, str], num: float, den: float) -> None:
        assert key in got, (key, sorted(got))
        assert (got[key]["numerator"], got[key]["denominator"]) == (num, den), (key, got[key])
        assert abs(got[key]["value"] - num / den) < 1e-9

    ratio(("collection_rate", "campaign", "c9"), 5_000, 20_000)  # K-1: last message before it paid
    ratio(("collection_rate", "collector", "cora"), 1_000, 4_000)  # K-5: cora's call-back task
    ratio(("collection_rate", "overall", "all"), 6_000, 24_000)
    # in arrears at the end of E: K-1 (messaged), K-2 (never contacted), K-5 (called); K-3 not due, K-4 nil
    ratio(("days_in_arrears_coverage", "overall", "all"), 2, 3)
    ratio(("days_in_arrears_coverage", "aging_bucket", "31-60"), 1, 1)
    ratio(("days_in_arrears_coverage", "aging_bucket", "91-120"), 0, 1)
    ratio(("days_in_arrears_coverage", "aging_bucket", "1-30"), 1, 1)


F = date(2027, 2, 1)  # after every other test's activity here: the figures on F are this test's own


def on(day_offset: int, h: int) -> datetime:
    return at(h, F + timedelta(days=day_offset))


async def seed(engine: Any) -> None:
    """Four accounts, written as escalation records them (activity, tasks, promises):
    A-1: campaign fa (message F-3), fay's call task (created F-4, done F 11:00); paid 1 000 at F-4 08:00
         (before both: no campaign, no collector) and 2 000 at F 15:00, 8 000 left; replied F-2;
         a promise kept on time at F 15:00, recorded by nobody (-> fay, the latest task's assignee).
    A-2: fa at F-1 10:00, fb at F 09:00; gus's task (created F-5), fay's (created F 12:00); paid 500 at
         F-1 12:00 (fa, gus) and 1 000 at F 10:00 (fb, gus), 200 left; a promise broken at F 06:00 that hal
         recorded (-> hal, not gus; campaign fa: fb came later).
    A-3: no campaign (a message without one), no collector (its only task has no assignee, done F 16:00);
         paid 3 000 at F 14:00, 1 000 left; replied F 13:00; a promise kept late at F 14:00.
    A-4: in arrears, last contacted at F-45 (fb), gus's open task from F-45; a promise hal recorded, kept
         late at F 08:00."""
    acts = [  # (account, at, kind, data)
        ("A-1", on(-20, 8), "account.created", {"balance_minor": 11_000, "due_date": F - timedelta(days=40)}),
        ("A-1", on(-4, 8), "account.payment",
         {"last_payment_minor": 1_000, "balance_minor": 10_000, "due_date": F - timedelta(days=40)}),
        ("A-1", on(-3, 10), "message_out.sent", {"campaign_id": "fa"}),
        ("A-1", on(-2, 9), "message_in", {}),
        ("A-1", on(0, 15), "account.payment",
         {"last_payment_minor": 2_000, "balance_minor": 8_000, "due_date": F - timedelta(days=40)}),
        ("A-2", on(-20, 8), "account.created", {"balance_minor": 1_700, "due_date": F - timedelta(days=5)}),
        ("A-2", on(-1, 10), "message_out.sent", {"campaign_id": "fa"}),
        ("A-2", on(-1, 12), "account.payment",
         {"last_payment_minor": 500, "balance_minor": 1_200, "due_date": F - timedelta(days=5)}),
        ("A-2", on(0, 9), "message_out.sent", {"campaign_id": "fb"}),
        ("A-2", on(0, 10), "account.payment",
         {"last_payment_minor": 1_000, "balance_minor": 200, "due_date": F - timedelta(days=5)}),
        ("A-3", on(-20, 8), "account.created", {"balance_minor": 4_000, "due_date": F - timedelta(days=10)}),
        ("A-3", on(-1, 11), "message_out.sent", {"campaign_id": None}),
        ("A-3", on(0, 13), "message_in", {}),
        ("A-3", on(0, 14), "account.payment",
         {"last_payment_minor": 3_000, "balance_minor": 1_000, "due_date": F - timedelta(days=10)}),
        ("A-4", on(-50, 8), "account.created", {"balance_minor": 5_000, "due_date": F - timedelta(days=100)}),
        ("A-4", on(-45, 10), "message_out.sent", {"campaign_id": "fb"}),
    ]  # fmt: skip
    tasks = [  # (task, account, kind, assignee, created, completed)
        ("T-1", "A-1", "call_customer", "fay", on(-4, 9), on(0, 11)),
        ("T-2", "A-2", "call_back", "gus", on(-5, 9), None),
        ("T-3", "A-2", "follow_up_promise", "fay", on(0, 12), None),
        ("T-4", "A-4", "call_customer", "gus", on(-45, 9), None),
        ("T-5", "A-3", "call_back", None, on(-3, 9), on(0, 16)),
    ]
    promises = [  # (promise, account, status, settled, on_time, collector)
        ("P-1", "A-1", "kept", on(0, 15), True, None),
        ("P-2", "A-2", "broken", on(0, 6), None, "hal"),
        ("P-3", "A-3", "kept", on(0, 14), False, None),
        ("P-4", "A-4", "kept", on(0, 8), False, "hal"),
    ]
    async with engine.begin() as c:
        await c.execute(
            text(
                """INSERT INTO escalation.activity (id, account_id, at, kind, summary, data)
                VALUES (:id, :a, :at, :k, '', CAST(:d AS jsonb))"""
            ),
            [
                {"id": f"{a}:{i}", "a": a, "at": when, "k": k, "d": json.dumps(d, default=str)}
                for i, (a, when, k, d) in enumerate(acts)
            ],
        )
        await c.execute(
            text(
                """INSERT INTO escalation.tasks (task_id, account_id, kind, priority, team, assignee, status,
                    due_at, sla_due_at, created_at, completed_at)
                VALUES (:t, :a, :k, 'normal', 'collectors', :who, :st, :cr, :cr, :cr, :done)"""
            ),
            [
                {"t": t, "a": a, "k": k, "who": who, "cr": cr, "done": done, "st": "done" if done else "open"}
                for t, a, k, who, cr, done in tasks
            ],
        )
        await c.execute(
            text(
                """INSERT INTO escalation.promises (promise_id, account_id, due_date, status, made_at,
                    settled_at, on_time, collector)
                VALUES (:p, :a, :due, :st, :made, :at, :ok, :who)"""
            ),
            [
                {"p": p, "a": a, "due": F, "st": st, "made": on(-7, 9), "at": when, "ok": ok, "who": who}
                for p, a, st, when, ok, who in promises
            ],
        )


async def test_every_metric_by_campaign_and_collector(engine) -> None:
    await seed(engine)
    async with engine.connect() as c:
        rows = await compute(c, F)
    got = {(r["metric"], r["scope"], r["scope_id"]): (r["num"], r["den"]) for r in rows}
    assert len(got) == len(rows)  # one row per metric, scope and scope id

    def ratio(metric: str, scope: str, sid: str, num: float, den: float | None) -> None:
        assert got.get((metric, scope, sid)) == (num, den), (
            metric,
            scope,
            sid,
            got.get((metric, scope, sid)),
        )

    # nothing without a campaign or collector is attributed: A-3 counts overall only, never under null/''
    assert not [k for k in got if k[1] in ("campaign", "collector") and not k[2]], sorted(got, key=str)
    mine = [k for k in got if k[0] != "days_in_arrears_coverage"]  # coverage sees other tests' accounts
    assert {k[2] for k in mine if k[1] == "campaign"} == {"fa", "fb"}
    assert {k[2] for k in mine if k[1] == "collector"} == {"fay", "gus", "hal"}

    # promises settled on F: P-1 kept (fa; fay by its task), P-2 broken (fa; hal recorded it), P-3 kept
    # (nobody's), P-4 kept (fb; hal)
    ratio("promise_fulfilment", "overall", "all", 3, 4)
    ratio("promise_fulfilment", "campaign", "fa", 1, 2)
    ratio("promise_fulfilment", "campaign", "fb", 1, 1)
    ratio("promise_fulfilment", "collector", "fay", 1, 1)
    ratio("promise_fulfilment", "collector", "hal", 1, 2)
    assert ("promise_fulfilment", "collector", "gus") not in got  # hal recorded A-2's promise
    # kept on time: P-1 only
    ratio("promise_punctuality", "overall", "all", 1, 3)
    ratio("promise_punctuality", "campaign", "fa", 1, 1)
    ratio("promise_punctuality", "campaign", "fb", 0, 1)
    ratio("promise_punctuality", "collector", "fay", 1, 1)
    ratio("promise_punctuality", "collector", "hal", 0, 1)

    # messaged in F-6..F: A-1 (fa, fay) replied, A-2 (fa then fb, gus) did not, A-3 (none) replied
    ratio("response_rate", "overall", "all", 2, 3)
    ratio("response_rate", "campaign", "fa", 1, 2)
    ratio("response_rate", "campaign", "fb", 0, 1)
    ratio("response_rate", "collector", "fay", 1, 1)
    ratio("response_rate", "collector", "gus", 0, 1)

    # paid in F-6..F: A-1 1 000 (nobody's) + 2 000 (fa, fay), 8 000 left; A-2 500 (fa, gus) + 1 000 (fb,
    # gus), 200 left, counted once for gus; A-3 3 000, 1 000 left
    ratio("recovery_rate", "overall", "all", 7_500, 7_500 + 8_000 + 200 + 1_000)
    ratio("recovery_rate", "campaign", "fa", 2_500, 2_500 + 8_000 + 200)
    ratio("recovery_rate", "campaign", "fb", 1_000, 1_000 + 200)
    ratio("recovery_rate", "collector", "fay", 2_000, 2_000 + 8_000)
    ratio("recovery_rate", "collector", "gus", 1_500, 1_500 + 200)
    # paid on F (fay's task and gus's were created before; fay's A-2 task after A-2's payment)
    ratio("collection_rate", "overall", "all", 6_000, 6_000 + 8_000 + 200 + 1_000)
    ratio("collection_rate", "campaign", "fa", 2_000, 10_000)
    ratio("collection_rate", "campaign", "fb", 1_000, 1_200)
    ratio("collection_rate", "collector", "fay", 2_000, 10_000)
    ratio("collection_rate", "collector", "gus", 1_000, 1_200)

    # contacts on F: A-2's message (fb, gus); fay's call on A-1 (fa); the unassigned call on A-3 (none)
    ratio("automated_notification_rate", "overall", "all", 1, 3)
    ratio("automated_notification_rate", "campaign", "fb", 1, 1)
    ratio("automated_notification_rate", "campaign", "fa", 0, 1)
    ratio("automated_notification_rate", "collector", "gus", 1, 1)
    ratio("automated_notification_rate", "collector", "fay", 0, 1)
    ratio("tasks_completed", "collector", "fay", 1, None)
    ratio("tasks_completed", "campaign", "fa", 1, None)

    # in arrears at the end of F (other tests' accounts too, so no overall here): A-1 (fa, fay; covered),
    # A-2 (fb, fay by its latest task; covered), A-3 (none; covered), A-4 (fb, gus; not contacted in 30 days)
    ratio("days_in_arrears_coverage", "campaign", "fa", 1, 1)
    ratio("days_in_arrears_coverage", "campaign", "fb", 1, 2)
    ratio("days_in_arrears_coverage", "collector", "fay", 2, 2)
    ratio("days_in_arrears_coverage", "collector", "gus", 0, 1)

    # the console's KPI page declares exactly the (metric, scope) pairs escalation computes
    declared = {(k.metric, s) for k in KPIS for s in k.scopes}
    assert {(m, s) for m, s, _ in got} == declared
