"""The segmenter's production consumer handler (`arrears_segmenter.consumer.make_handler`, the one its
`ServiceDefinition` wires to every subscribed topic) through the real StreamRunner and outbox relay against
the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from arrears_segmenter.consumer import make_handler
from arrears_segmenter.settings import SegmenterSettings
from arrears_shared import topics
from arrears_shared.cloudevents import decode, encode
from arrears_shared.db.engine import make_engine
from arrears_shared.events import Event, Intent, NoticeDue, OverrideRequested
from arrears_shared.stream.relay import OutboxRelay, make_producer
from arrears_shared.stream.runner import StreamRunner
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from vault_support import SyncKeys

from .support import account, deps, reply, run_tick

# what the segmenter consumes in production (its declared subscriptions)
SUBSCRIBED = [topics.ACCOUNT_CHANGED, topics.REPLY_RECEIVED, topics.MESSAGE_SENT, topics.OVERRIDES]


async def _create_dead_letter_topics(bootstrap: str, group: str) -> None:
    """The test's own consumer group dead-letters to its own topics (the session broker only has the
    services' ones): records other tests left on the shared topics must not stall this runner."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for t in SUBSCRIBED:
            with contextlib.suppress(Exception):  # it may exist already
                await admin.create_topics([NewTopic(topics.dlq_topic(t, group), 1, 1)])
    finally:
        await admin.close()


async def _produce(bootstrap: str, items: list[tuple[Event, str]]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await p.start()
    try:
        for ev, ce_id in items:
            rec = encode(ev, source="test", id=ce_id)
            await p.send_and_wait(rec.topic, value=rec.value, key=rec.key, headers=rec.headers)
    finally:
        await p.stop()


async def _wait(cond: Callable[[], Awaitable[bool]], what: str, limit_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not await cond():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def _scalar(engine: AsyncEngine, sql: str, **params: object) -> object:
    async with engine.connect() as c:
        return (await c.execute(text(sql), params)).scalar()


async def _notices_due(
    bootstrap: str, url: str, ids: tuple[str, ...], expect: int
) -> list[tuple[str, str, str]]:
    """(account, channel, ce_id) of every notice-due for `ids` (opened with the keys of database `url`): until
    `expect` arrived, then one more poll (a second before giving up) so that an extra notice would be seen
    too. Their personal fields travel sealed: the customer's name and address are not in the raw record."""
    keys = SyncKeys(url)
    consumer = AIOKafkaConsumer(
        topics.NOTICE_DUE, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    got: list[tuple[str, str, str]] = []

    async def poll(timeout_ms: int) -> None:
        for recs in (await consumer.getmany(timeout_ms=timeout_ms)).values():
            for r in recs:
                subject = dict(r.headers).get("ce_subject", b"").decode()
                if subject not in ids:
                    continue  # other tests' records: sealed under keys of other databases
                if dict(r.headers).get("ce_type") != NoticeDue.ce_type.encode():
                    continue  # a DunningStopped (the pause): not a notice (tests/segmenter/test_withdrawals.py)
                env = decode(r.headers, r.value, {subject: keys[subject]})
                assert env.data.customer_name == "Ada Debtor" and b"Ada Debtor" not in r.value
                assert (
                    env.data.to in {"+14155550100", "ada@example.com"} and env.data.to.encode() not in r.value
                )
                got.append((env.data.account_id, env.data.channel, env.id))

    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(got) < expect and asyncio.get_running_loop().time() < deadline:
            await poll(200)
        await poll(1000)
    finally:
        await consumer.stop()
    return got


async def test_accounts_stop_reply_and_pause_override_through_the_runner_produce_the_right_notice_due(
    broker, segmenter_url
) -> None:
    tag = uuid.uuid4().hex[:8]
    a, b, c = f"RUN-{tag}-A", f"RUN-{tag}-B", f"RUN-{tag}-C"
    group = f"segmenter-test-{tag}"
    now = datetime(2026, 3, 5, 17, tzinfo=UTC)
    d = deps(now)
    s = SegmenterSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=segmenter_url,
        runner_poll_timeout_ms=100,
        outbox_poll_s=0.02,
    )
    await _create_dead_letter_topics(broker.bootstrap_servers, group)
    engine = make_engine(segmenter_url)
    runner = StreamRunner(
        group=group,
        topics=SUBSCRIBED,
        handler=make_handler(d),
        engine=engine,
        schema="segmenter",
        settings=s,
        service="segmenter",
    )
    run_task = asyncio.create_task(runner.run())
    producer = make_producer(s, "segmenter-test-relay")
    await producer.start()
    relay = OutboxRelay(engine=engine, schema="segmenter", producer=producer, settings=s, service="segmenter")
    relay_task = asyncio.create_task(relay.run())
    try:
        await _produce(
            broker.bootstrap_servers,
            [
                (account(a), f"ac-{a}"),
                (account(a), f"ac-{a}"),  # redelivered duplicate: the inbox absorbs it
                (account(b), f"ac-{b}"),
                (account(c), f"ac-{c}"),
                (reply(b, Intent.OPT_OUT, "sms"), f"rr-{b}"),
            ],
        )

        async def b_opted_out_and_c_known() -> bool:
            opted_out = await _scalar(
                engine,
                "SELECT opted_out FROM segmenter.account_channels WHERE account_id = :b AND channel = 'sms'",
                b=b,
            )
            known = await _scalar(
                engine, "SELECT count(*) FROM segmenter.accounts WHERE account_id = :c", c=c
            )
            return bool(opted_out) and known == 1

        await _wait(b_opted_out_and_c_known, "the account events and the STOP reply")

        # then, on the overrides topic, a person pauses C: the production handler applies it
        pause = OverrideRequested(
            account_id=c,
            override_id=f"ov-{c}",
            action="pause",
            actor="sup-1",
            role="supervisor",
            reason="customer asked for time",
            requested_at=now,
        )
        await _produce(broker.bootstrap_servers, [(pause, f"ov-{c}")])

        async def c_paused() -> bool:
            n = await _scalar(
                engine,
                "SELECT count(*) FROM segmenter.decisions WHERE account_id = :c AND rule_id = 'override.pause'",
                c=c,
            )
            return n == 1

        await _wait(c_paused, "the pause override")

        await run_tick(engine, d)
        relay.wake()
        got = await _notices_due(broker.bootstrap_servers, segmenter_url, (a, b, c), expect=3)
        assert sorted(got) == sorted(
            [
                (a, "sms", f"{a}:default:v1:s1:c0:sms"),
                (a, "email", f"{a}:default:v1:s1:c0:email"),
                (b, "email", f"{b}:default:v1:s1:c0:email"),  # STOP ends SMS only
                # nothing for C: paused
            ]
        )
    finally:
        runner.stop()
        relay.stop()
        for t in (run_task, relay_task):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(t, 10)
        await producer.stop()
        await engine.dispose()
