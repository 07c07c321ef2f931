"""Escalation rules as data, tasks with assignment and SLA, promise-to-pay tracking — real Postgres."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from arrears_escalation.cases.scheduled import tick
from arrears_escalation.cases.service import list_cases
from arrears_escalation.deps import Deps
from arrears_escalation.promises.service import list_promises
from arrears_escalation.rules.service import load_rules
from arrears_escalation.tasks.assignment import Agent
from arrears_escalation.tasks.service import list_tasks
from arrears_shared.clock import Clock
from arrears_shared.events import (
    AccountChanged,
    DeliveryStatus,
    Intent,
    MessageSent,
    PaymentFailed,
    ReplyReceived,
    Tier,
)
from sqlalchemy import text

from .test_escalation import handle

T0 = datetime(2026, 6, 1, 9, tzinfo=UTC)
AGENTS = [
    Agent(id="ana", team="collectors"),
    Agent(id="ben", team="collectors"),
    Agent(id="off", team="collectors", active=False),
    Agent(id="sue", team="supervisors"),
    Agent(id="sam", team="senior"),
]


def deps(**kw: Any) -> Deps:
    return Deps(clock=Clock(fixed=T0), agents=AGENTS, **kw)


def reply(aid: str, intent: Intent, rid: str, confidence: float = 0.9, **kw: Any) -> ReplyReceived:
    return ReplyReceived(
        account_id=aid,
        reply_id=rid,
        channel="sms",
        from_address="+14155550100",
        text="x",
        intent=intent,
        confidence=confidence,
        received_at=T0,
        **kw,
    )


def account(aid: str, balance: int, change: str = "updated", **kw: Any) -> AccountChanged:
    return AccountChanged(
        account_id=aid,
        change=change,  # type: ignore[arg-type]
        source="payment" if change == "payment" else "sheet",
        customer_name="X",
        balance_minor=balance,
        currency="USD",
        due_date=date(2026, 5, 1),
        content_hash=f"h{balance}",
        as_of=T0,
        **kw,
    )


async def outbox(engine, topic: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    async with engine.connect() as c:
        rows = (
            await c.execute(
                text("SELECT value FROM escalation.outbox WHERE topic = :t ORDER BY id"), {"t": topic}
            )
        ).all()
    return [json.loads(bytes(v)) for (v,) in rows]


def test_rules_load_disable_and_thresholds() -> None:
    rs = load_rules(disabled="high_value, dispute", thresholds='{"broken_promise.grace_days": 3}')
    by = {r.id: r for r in rs.rules}
    assert not by["high_value"].enabled and not by["dispute"].enabled and by["hardship"].enabled
    assert by["broken_promise"].conditions.grace_days == 3
    with pytest.raises(ValueError, match="unknown rules"):
        load_rules(disabled="no_such_rule")
    with pytest.raises(ValueError):
        load_rules(thresholds='{"high_value.min_balance_minor": "lots"}')


async def test_high_value_threshold_and_disable(engine) -> None:
    await handle(engine, deps(), account("HV-1", 600_000), account("HV-small", 10_000))
    await handle(engine, deps(), account("HV-1", 650_000))  # same cycle: no second case
    async with engine.connect() as c:
        assert [(x.reason, x.priority, x.rule_id) for x in await list_cases(c, "open", "HV-1")] == [
            ("high_value", "high", "high_value")
        ]
        assert await list_cases(c, None, "HV-small") == []
        [task] = await list_tasks(c, account_id="HV-1")
    assert (task.kind, task.team, task.assignee, task.priority) == ("senior_review", "senior", "sam", "high")
    assert task.due_at == T0 + timedelta(hours=48) and task.sla_due_at == T0 + timedelta(hours=24)
    raised = deps(rules=load_rules(thresholds='{"high_value.min_balance_minor": 10000000}'))
    await handle(engine, raised, account("HV-2", 600_000))
    off = deps(rules=load_rules(disabled="high_value"))
    await handle(engine, off, account("HV-3", 900_000))
    async with engine.connect() as c:
        assert await list_cases(c, None, "HV-2") == [] and await list_cases(c, None, "HV-3") == []


async def test_round_robin_assignment_and_unclear_reply_task(engine) -> None:
    d = deps()
    for i in range(3):
        await handle(engine, d, reply(f"RR-{i}", Intent.CALLBACK_REQUEST, rid=f"rr-{i}"))
    async with engine.connect() as c:
        got = [(await list_tasks(c, account_id=f"RR-{i}"))[0] for i in range(3)]
    names = [t.assignee for t in got]
    assert sorted(names[:2]) == ["ana", "ben"] and names[2] == names[0]  # inactive "off" never gets one
    assert {t.kind for t in got} == {"call_back"} and {t.case_id is not None for t in got} == {True}
    # an unsure reply is a task for a person, without a case; a confident "ok" is nothing
    unsure = reply(
        "UN-1", Intent.OTHER, rid="un-1", confidence=0.4, needs_review=True, suggested_intent=Intent.DISPUTE
    )
    await handle(engine, d, unsure)
    await handle(engine, d, reply("UN-2", Intent.OTHER, rid="un-2", confidence=0.9))
    async with engine.connect() as c:
        [t] = await list_tasks(c, account_id="UN-1")
        assert (t.kind, t.case_id, t.priority, t.status) == ("read_reply", None, "normal", "open")
        assert await list_tasks(c, account_id="UN-2") == [] and await list_cases(c, None, "UN-1") == []
    # the person's decision (the corrected intent, published as a reviewed reply) completes the task and is
    # acted on like any reply: a dispute opens its case
    decided = unsure.model_copy(
        update={"intent": Intent.DISPUTE, "confidence": 1.0, "needs_review": False, "reviewed_by": "carla"}
    )
    await handle(engine, d, decided)
    async with engine.connect() as c:
        tasks = {t.kind: t for t in await list_tasks(c, account_id="UN-1")}
        assert tasks["read_reply"].status == "done" and "carla" in (tasks["read_reply"].outcome or "")
        assert "validate_debt" in tasks
        assert [x.reason for x in await list_cases(c, None, "UN-1")] == ["dispute"]


async def test_possible_opt_out_is_an_urgent_review(engine) -> None:
    d = deps()
    ev = reply(
        "PO-1", Intent.OTHER, rid="po-1", confidence=0.55, needs_review=True, possible_opt_out=True,
        suggested_intent=Intent.OTHER,
    )  # fmt: skip
    await handle(engine, d, ev)
    async with engine.connect() as c:
        [t] = await list_tasks(c, account_id="PO-1")
        assert (t.kind, t.priority, t.status) == ("review_opt_out", "high", "open")
        assert "paused" in t.detail and await list_cases(c, None, "PO-1") == []
    # a second unsure reply while the first waits: its own task (each hold needs its own decision)
    await handle(engine, d, ev.model_copy(update={"reply_id": "po-2"}))
    async with engine.connect() as c:
        assert len(await list_tasks(c, account_id="PO-1")) == 2
    await handle(
        engine,
        d,
        ev.model_copy(
            update={
                "intent": Intent.OPT_OUT,
                "reviewed_by": "dev",
                "possible_opt_out": False,
                "needs_review": False,
            }
        ),
    )
    async with engine.connect() as c:
        statuses = {t.status for t in await list_tasks(c, account_id="PO-1")}
        assert statuses == {"done", "open"}, "only the decided reply's task is done"


async def test_sla_breach_then_supervisor_escalation(engine) -> None:
    d = deps(supervisor_after=timedelta(hours=4))
    await handle(engine, d, reply("SLA-1", Intent.CALLBACK_REQUEST, rid="sla-1"))  # SLA 2 h
    d.clock.set(T0 + timedelta(hours=1.5) - timedelta(seconds=1))
    await tick(engine, "escalation", "escalation", d)
    async with engine.connect() as c:
        [t] = await list_tasks(c, account_id="SLA-1")
    assert t.sla_state == "ok"
    d.clock.set(T0 + timedelta(hours=2) - timedelta(seconds=1))  # three quarters of the SLA passed
    await tick(engine, "escalation", "escalation", d)
    async with engine.connect() as c:
        [t] = await list_tasks(c, account_id="SLA-1")
    assert t.sla_state == "at_risk"
    d.clock.set(T0 + timedelta(hours=2))
    await tick(engine, "escalation", "escalation", d)
    async with engine.connect() as c:
        [t] = await list_tasks(c, account_id="SLA-1")
    assert t.sla_state == "breached" and t.team == "collectors"
    d.clock.set(T0 + timedelta(hours=6))
    await tick(engine, "escalation", "escalation", d)
    async with engine.connect() as c:
        [t] = await list_tasks(c, account_id="SLA-1")
    assert (t.sla_state, t.team, t.assignee, t.priority) == ("escalated", "supervisors", "sue", "critical")


async def test_promise_kept_on_payment_and_broken_promise_resumes_dunning(engine) -> None:
    d = deps()
    due = date(2026, 6, 5)
    await handle(
        engine,
        d,
        reply("PR-kept", Intent.PROMISE_TO_PAY, rid="p-kept", promise_amount_minor=20_000, promise_date=due),
        reply(
            "PR-broken", Intent.PROMISE_TO_PAY, rid="p-broken", promise_amount_minor=5_000, promise_date=due
        ),
        reply("PR-short", Intent.PROMISE_TO_PAY, rid="p-short", promise_amount_minor=9_000, promise_date=due),
    )
    paid = account(
        "PR-kept", 0, change="payment", last_payment_minor=20_000, last_payment_date=date(2026, 6, 4)
    )
    short = account(
        "PR-short", 100, change="payment", last_payment_minor=1_000, last_payment_date=date(2026, 6, 4)
    )
    await handle(engine, d, paid, short)
    async with engine.connect() as c:
        [kept] = await list_promises(c, "PR-kept")
        [pending] = await list_promises(c, "PR-short")
    assert (kept.status, kept.on_time, kept.paid_minor) == ("kept", True, 20_000)
    assert pending.status == "pending"  # a partial payment does not keep the promise
    d.clock.set(datetime(2026, 6, 6, 12, tzinfo=UTC))  # the day after the due date: inside the 1-day grace
    await tick(engine, "escalation", "escalation", d)
    async with engine.connect() as c:
        assert (await list_promises(c, "PR-broken"))[0].status == "pending"
    d.clock.set(datetime(2026, 6, 7, 0, 30, tzinfo=UTC))
    await tick(engine, "escalation", "escalation", d)
    await tick(engine, "escalation", "escalation", d)
    async with engine.connect() as c:
        assert (await list_promises(c, "PR-broken"))[0].status == "broken"
        assert (await list_promises(c, "PR-kept"))[0].status == "kept"
        cases = await list_cases(c, "open", "PR-broken")
        [task] = await list_tasks(c, account_id="PR-broken")
    assert [(x.reason, x.priority) for x in cases] == [("broken_promise", "high")]
    assert task.kind == "follow_up_promise" and task.case_id == cases[0].case_id
    overrides = [o for o in await outbox(engine, "overrides") if o["account_id"] in ("PR-broken", "PR-short")]
    assert sorted((o["account_id"], o["action"], o["role"]) for o in overrides) == [
        ("PR-broken", "resume_dunning", "system"),
        ("PR-short", "resume_dunning", "system"),
    ]


async def test_permanent_delivery_failure_opens_a_low_priority_case(engine) -> None:
    d = deps()
    failed = MessageSent(
        account_id="DF-1",
        notice_id="DF-1:n1",
        channel="email",
        status=DeliveryStatus.FAILED,
        provider="gmail",
        to="x@bounce.invalid",
        tier=Tier.REMINDER,
        step=1,
        reason="bounced: 5.1.1",
        permanent=True,
        sent_at=T0,
    )
    await handle(engine, d, failed, failed)
    async with engine.connect() as c:
        assert [(x.reason, x.priority) for x in await list_cases(c, None, "DF-1")] == [
            ("delivery_failed", "low")
        ]


def payment_failed(aid: str, failure_id: str, code: str | None = "card_declined") -> PaymentFailed:
    return PaymentFailed(
        account_id=aid,
        provider="stripe",
        payment_id="pi_1",
        failure_id=failure_id,
        amount_minor=2500,
        currency="USD",
        failure_code=code,
        failure_message="Your card was declined.",
        balance_minor=10_000,
        failed_at=T0,
    )


async def test_failed_payment_opens_a_case_and_a_follow_up_task(engine) -> None:
    d = deps()
    # the same failure twice (new ce_ids, so past the inbox), then another failure while the case is open
    await handle(engine, d, payment_failed("FP-1", "ch_1"), payment_failed("FP-1", "ch_1"))
    await handle(engine, d, payment_failed("FP-1", "ch_2", code="insufficient_funds"))
    async with engine.connect() as c:
        cases = await list_cases(c, None, "FP-1")
        [task] = await list_tasks(c, account_id="FP-1")
    assert [(x.reason, x.priority, x.rule_id, x.status) for x in cases] == [
        ("failed_payment", "high", "failed_payment", "open")
    ]
    assert "stripe payment pi_1 25.00 USD failed: card_declined" in cases[0].detail
    assert (task.kind, task.team, task.priority, task.case_id) == (
        "payment_follow_up",
        "collectors",
        "high",
        cases[0].case_id,
    )
    escalated = [o for o in await outbox(engine, "case-escalated") if o["account_id"] == "FP-1"]
    assert [(o["reason"], o["priority"]) for o in escalated] == [("failed_payment", "high")]
    async with engine.connect() as c:
        kinds = (
            await c.execute(
                text("SELECT kind, summary FROM escalation.activity WHERE account_id = 'FP-1' ORDER BY at")
            )
        ).all()
    assert [k for k, _ in kinds] == ["payment.failed"] * 3  # on the timeline, each as it came
    assert kinds[0][1] == "payment 25.00 USD failed (stripe): card_declined"
    # the rule can be switched off like any other
    await handle(engine, deps(rules=load_rules(disabled="failed_payment")), payment_failed("FP-2", "ch_3"))
    async with engine.connect() as c:
        assert await list_cases(c, None, "FP-2") == []


async def test_an_instalment_offer_is_recorded_as_a_plan(engine) -> None:
    d = deps()
    plan = reply(
        "PL-1", Intent.PROMISE_TO_PAY, rid="pl-1", promise_amount_minor=5_000, promise_currency="USD",
        promise_plan_every="week",
    )  # fmt: skip
    dated = reply(
        "PL-2", Intent.PROMISE_TO_PAY, rid="pl-2", promise_amount_minor=20_000, promise_currency="MXN",
        promise_plan_every="month", promise_date=date(2026, 12, 15),
    )  # fmt: skip
    await handle(engine, d, plan)
    await handle(engine, d, dated)
    async with engine.connect() as c:
        [p1] = await list_promises(c, "PL-1")
        [p2] = await list_promises(c, "PL-2")
    assert (p1.amount_minor, p1.currency, p1.plan_every) == (5_000, "USD", "week")
    assert p1.due_date == plan.received_at.date() + timedelta(days=7), "no start named: due within one period"
    assert (p2.amount_minor, p2.currency, p2.plan_every, p2.due_date) == (
        20_000,
        "MXN",
        "month",
        date(2026, 12, 15),
    )
