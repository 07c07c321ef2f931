"""Segmenter handlers through the real StreamRunner and outbox relay against the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from arrears_segmenter.accounts.handlers import make_handler
from arrears_segmenter.settings import SegmenterSettings
from arrears_shared import topics
from arrears_shared.cloudevents import decode, encode
from arrears_shared.db.engine import make_engine
from arrears_shared.events import Channel, Event, Intent
from arrears_shared.stream.relay import OutboxRelay, make_producer
from arrears_shared.stream.runner import StreamRunner
from sqlalchemy import text

from .support import account, deps, reply, run_tick


async def _produce(bootstrap: str, items: list[tuple[Event, str]]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await p.start()
    try:
        for ev, ce_id in items:
            rec = encode(ev, source="test", id=ce_id)
            await p.send_and_wait(rec.topic, value=rec.value, key=rec.key, headers=rec.headers)
    finally:
        await p.stop()


async def _wait(cond, limit_s: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + limit_s
    while not await cond():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_account_and_stop_reply_through_the_runner_produce_the_right_notice_due(
    broker, segmenter_url
) -> None:
    tag = uuid.uuid4().hex[:8]
    a, b = f"RUN-{tag}-A", f"RUN-{tag}-B"
    now = datetime(2026, 3, 5, 17, tzinfo=UTC)
    d = deps(now)
    s = SegmenterSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=segmenter_url,
        runner_poll_timeout_ms=100,
        outbox_poll_s=0.02,
    )
    engine = make_engine(segmenter_url)
    runner = StreamRunner(
        group=f"segmenter-test-{tag}",
        topics=[topics.ACCOUNT_CHANGED, topics.REPLY_RECEIVED, topics.MESSAGE_SENT],
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
                (reply(b, Intent.OPT_OUT, Channel.SMS), f"rr-{b}"),
            ],
        )

        async def applied() -> bool:
            async with engine.connect() as c:
                return bool(
                    (
                        await c.execute(
                            text("SELECT sms_opt_out FROM segmenter.accounts WHERE account_id = :b"), {"b": b}
                        )
                    ).scalar()
                )

        await _wait(applied)
        await run_tick(engine, d)
        relay.wake()

        consumer = AIOKafkaConsumer(
            topics.NOTICE_DUE,
            bootstrap_servers=broker.bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        got: list[tuple[str, str, str]] = []
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while len(got) < 3 and asyncio.get_running_loop().time() < deadline:
                for recs in (await consumer.getmany(timeout_ms=200)).values():
                    for r in recs:
                        env = decode(r.headers, r.value)
                        if env.data.account_id in (a, b):
                            got.append((env.data.account_id, env.data.channel.value, env.id))
            for recs in (await consumer.getmany(timeout_ms=1000)).values():
                for r in recs:
                    env = decode(r.headers, r.value)
                    if env.data.account_id in (a, b):
                        got.append((env.data.account_id, env.data.channel.value, env.id))
        finally:
            await consumer.stop()
        assert sorted(got) == sorted(
            [
                (a, "sms", f"{a}:default:v1:s1:c0:sms"),
                (a, "email", f"{a}:default:v1:s1:c0:email"),
                (b, "email", f"{b}:default:v1:s1:c0:email"),
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
