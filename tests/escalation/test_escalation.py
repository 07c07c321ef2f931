"""Escalation against real Postgres, plus one run through the StreamRunner and the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaProducer
from arrears_escalation.cases.handlers import make_handler
from arrears_escalation.cases.scheduled import tick
from arrears_escalation.cases.service import CaseNotOpen, case_id_for, close_case, list_cases
from arrears_escalation.deps import Deps
from arrears_escalation.settings import EscalationSettings
from arrears_shared import topology
from arrears_shared.clock import Clock
from arrears_shared.cloudevents import Envelope, decode, encode
from arrears_shared.db.engine import make_engine
from arrears_shared.events import (
    AccountChanged,
    DeliveryStatus,
    Event,
    Intent,
    MessageSent,
    ReplyReceived,
    Tier,
)
from arrears_shared.stream.runner import StreamRunner
from arrears_shared.stream.transaction import transaction
from sqlalchemy import text

T0 = datetime(2026, 5, 1, 14, tzinfo=UTC)


def reply(aid: str, intent: Intent, rid: str | None = None) -> ReplyReceived:
    return ReplyReceived(
        account_id=aid,
        reply_id=rid or f"r-{aid}-{intent}",
        channel="sms",
        from_address="+14155550100",
        text="please call me",
        intent=intent,
        confidence=0.9,
        received_at=T0,
    )


def final_sent(
    aid: str, at: datetime, status: DeliveryStatus = DeliveryStatus.SENT, tier: Tier = Tier.FINAL
) -> MessageSent:
    return MessageSent(
        account_id=aid,
        notice_id=f"{aid}:default:v1:s3:c0:sms",
        channel="sms",
        status=status,
        provider="quo",
        to="+14155550100",
        tier=tier,
        step=3,
        sent_at=at,
    )


def env(ev: Event, ce_id: str | None = None) -> Envelope:
    rec = encode(ev, source="test", id=ce_id)
    return decode(rec.headers, rec.value)


async def handle(engine, d: Deps, *events: Event) -> None:  # type: ignore[no-untyped-def]
    async with transaction(engine, "escalation", "escalation") as tx:
        await make_handler(d)([env(e) for e in events], tx)


async def escalated(engine, aid: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    async with engine.connect() as c:
        rows = (
            await c.execute(
                text("SELECT headers, value FROM escalation.outbox WHERE topic='case-escalated' ORDER BY id")
            )
        ).all()
    out = [{"ce_id": dict(h)["ce_id"], **json.loads(bytes(v))} for h, v in rows]
    return [o for o in out if o["account_id"] == aid]


async def test_callback_request_opens_one_high_priority_case_even_when_processed_twice(engine) -> None:
    d = Deps(clock=Clock(fixed=T0))
    r = reply("E-cb", Intent.CALLBACK_REQUEST)
    await handle(engine, d, r)
    await handle(engine, d, r)  # processed twice (e.g. inbox lost / replay with a new ce_id)
    async with engine.connect() as c:
        cases = await list_cases(c, "open", "E-cb")
    assert [(x.reason, x.priority) for x in cases] == [("callback_request", "high")]
    assert cases[0].case_id == case_id_for("E-cb", "callback_request", r.reply_id)
    ev = await escalated(engine, "E-cb")
    assert len(ev) == 1 and ev[0]["case_id"] == cases[0].case_id and ev[0]["reason"] == "callback_request"
    # a second, different callback request while the case is open does not open another one
    await handle(engine, d, reply("E-cb", Intent.CALLBACK_REQUEST, rid="r-other"))
    async with engine.connect() as c:
        assert len(await list_cases(c, "open", "E-cb")) == 1
    # dispute and hardship are their own reasons; "other" opens nothing
    await handle(
        engine, d, reply("E-cb", Intent.DISPUTE), reply("E-cb", Intent.HARDSHIP), reply("E-cb", Intent.OTHER)
    )
    async with engine.connect() as c:
        assert sorted(x.reason for x in await list_cases(c, "open", "E-cb")) == [
            "callback_request",
            "dispute",
            "hardship",
        ]


async def test_close_case_then_a_new_request_can_open_a_new_case(engine) -> None:
    d = Deps(clock=Clock(fixed=T0))
    await handle(engine, d, reply("E-close", Intent.CALLBACK_REQUEST, rid="r1"))
    async with engine.connect() as c:
        (case,) = await list_cases(c, "open", "E-close")
    async with engine.begin() as c:
        closed = await close_case(c, case.case_id, "called back, plan agreed", T0)
    assert (
        closed is not None and closed.status == "closed" and closed.close_note == "called back, plan agreed"
    )
    async with engine.begin() as c:
        try:
            await close_case(c, case.case_id, "again", T0)
            raise AssertionError("closing twice must fail")
        except CaseNotOpen:
            pass
        assert await close_case(c, "nope", "x", T0) is None
    await handle(engine, d, reply("E-close", Intent.CALLBACK_REQUEST, rid="r2"))
    async with engine.connect() as c:
        assert len(await list_cases(c, "open", "E-close")) == 1
        assert len(await list_cases(c, None, "E-close")) == 2


async def test_final_sent_and_no_reply_opens_no_response_case_after_the_delay(engine) -> None:
    d = Deps(clock=Clock(fixed=T0), no_response_after=timedelta(days=7))
    await handle(engine, d, final_sent("E-nr", T0), final_sent("E-nr", T0))
    # reminders and failed finals schedule nothing
    await handle(
        engine,
        d,
        final_sent("E-rem", T0, tier=Tier.REMINDER),
        final_sent("E-fail", T0, status=DeliveryStatus.FAILED),
    )
    d.clock.set(T0 + timedelta(days=7) - timedelta(seconds=1))
    await tick(engine, "escalation", "escalation", d)
    assert await escalated(engine, "E-nr") == []
    d.clock.set(T0 + timedelta(days=7))
    await tick(engine, "escalation", "escalation", d)
    await tick(engine, "escalation", "escalation", d)
    ev = await escalated(engine, "E-nr")
    assert [(e["reason"], e["priority"]) for e in ev] == [("no_response", "normal")]
    d.clock.advance(timedelta(days=30))
    await tick(engine, "escalation", "escalation", d)
    assert await escalated(engine, "E-rem") == [] and await escalated(engine, "E-fail") == []


async def test_a_reply_or_a_payment_cancels_the_no_response_check(engine) -> None:
    d = Deps(clock=Clock(fixed=T0), no_response_after=timedelta(days=7))
    await handle(engine, d, final_sent("E-rep", T0), final_sent("E-pay", T0))
    d.clock.advance(timedelta(days=2))
    await handle(engine, d, reply("E-rep", Intent.OTHER))
    await handle(
        engine,
        d,
        AccountChanged(
            account_id="E-pay",
            change="payment",
            source="payment",
            customer_name="X",
            balance_minor=0,
            currency="USD",
            due_date=date(2026, 1, 1),
            content_hash="p",
            as_of=T0,
        ),
    )
    d.clock.advance(timedelta(days=30))
    await tick(engine, "escalation", "escalation", d)
    assert await escalated(engine, "E-rep") == [] and await escalated(engine, "E-pay") == []
    async with engine.connect() as c:
        states = (
            await c.execute(
                text(
                    "SELECT account_id, state, reason FROM escalation.timers WHERE account_id IN ('E-rep','E-pay') ORDER BY account_id"
                )
            )
        ).all()
    assert [tuple(s) for s in states] == [
        ("E-pay", "cancelled", "account_settled"),
        ("E-rep", "cancelled", "reply:other"),
    ]


async def test_runner_against_the_real_broker_opens_one_case_for_a_duplicated_reply(
    broker, escalation_url
) -> None:
    tag = uuid.uuid4().hex[:8]
    aid = f"ESC-{tag}"
    d = Deps(clock=Clock(fixed=T0))
    s = EscalationSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=escalation_url,
        runner_poll_timeout_ms=100,
    )
    engine = make_engine(escalation_url)
    runner = StreamRunner(
        group=f"escalation-test-{tag}",
        topics=topology.service("escalation").consumes,
        handler=make_handler(d),
        engine=engine,
        schema="escalation",
        settings=s,
        service="escalation",
    )
    task = asyncio.create_task(runner.run())
    try:
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
        await p.start()
        try:
            r = reply(aid, Intent.CALLBACK_REQUEST)
            for ce in ("ce-1", "ce-1", "ce-2"):  # a redelivery and a replay under another ce_id
                rec = encode(r, source="responses", id=ce)
                await p.send_and_wait(rec.topic, value=rec.value, key=rec.key, headers=rec.headers)
        finally:
            await p.stop()
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            async with engine.connect() as c:
                inbox = (
                    await c.execute(
                        text("SELECT count(*) FROM escalation.inbox WHERE ce_id IN ('ce-1','ce-2')")
                    )
                ).scalar()
            if inbox == 2:
                break
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.1)
        async with engine.connect() as c:
            cases = await list_cases(c, None, aid)
        assert [(x.reason, x.status) for x in cases] == [("callback_request", "open")]
        assert len(await escalated(engine, aid)) == 1
    finally:
        runner.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await engine.dispose()
