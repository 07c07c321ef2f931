"""Collection metrics (seed 004) from real events through the handler, snapshotted once per day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from arrears_escalation.cases.scheduled import tick
from arrears_escalation.clock import Clock
from arrears_escalation.collection.scheduled import snapshot_if_due
from arrears_escalation.collection.service import read, snapshot
from arrears_escalation.deps import Deps
from arrears_escalation.tasks.assignment import Agent
from arrears_escalation.tasks.service import complete_task, list_tasks
from arrears_shared.events import (
    AccountChanged,
    Channel,
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
        channel=Channel.SMS,
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
        channel=Channel.SMS,
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
