"""The stream metrics alerts rely on, on the real broker and PostgreSQL: lag and processing-delay series exist
only for the partitions a pod owns (a rebalance removes the revoked ones), the processing delay grows while a
batch is blocked, and the outbox reports the age of its oldest unpublished row."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from arrears_shared import telemetry
from arrears_shared.cloudevents import Envelope, encode
from arrears_shared.db.engine import make_engine
from arrears_shared.stream.relay import OutboxRelay, make_producer
from arrears_shared.stream.runner import StreamRunner
from arrears_shared.stream.transaction import Transaction
from arrears_shared.topics import dlq_topic
from prometheus_client import REGISTRY
from sqlalchemy import text

from .factories import account_changed
from .support import (
    create_schema,
    create_topics,
    produce,
    recording_handler,
    settings,
    unique,
    valid_records,
    wait_until,
)

PARTITIONS = 4


def exported(metric: str, service: str) -> set[int]:
    """Partitions with a `metric` series for `service` in the process registry (what /metrics shows)."""
    return {
        int(s.labels["partition"])
        for family in REGISTRY.collect()
        for s in family.samples
        if s.name == metric and s.labels.get("service") == service
    }


def owned(runner: StreamRunner) -> set[int]:
    return {tp.partition for tp in runner.state.assigned}


async def test_a_rebalance_removes_the_series_of_revoked_partitions(broker, pg) -> None:
    url = pg.create_database(unique("db"))
    schema, topic, group = unique("svc"), unique("in"), unique("grp")
    await create_topics(broker.bootstrap_servers, [topic, dlq_topic(topic, group)], partitions=PARTITIONS)
    await create_schema(url, schema)
    await produce(broker.bootstrap_servers, topic, valid_records(20))
    engine = make_engine(url)

    def runner(service: str) -> StreamRunner:  # one process, two pods: told apart by the service label
        return StreamRunner(
            group=group,
            topics=[topic],
            handler=recording_handler(schema, None),
            engine=engine,
            schema=schema,
            settings=settings(broker.bootstrap_servers, url),
            service=service,
        )

    a, b = runner(unique("pod_a")), runner(unique("pod_b"))
    every = set(range(PARTITIONS))

    async def series_follow_ownership(*runners: StreamRunner) -> bool:
        return all(
            owned(r)
            and exported("arrears_consumer_lag", r.service) == owned(r)
            and exported("arrears_consumer_processing_delay_seconds", r.service) == owned(r)
            for r in runners
        )

    a_task = asyncio.create_task(a.run())
    b_task: asyncio.Task[None] | None = None
    try:
        await wait_until(lambda: series_follow_ownership(a))
        assert owned(a) == every

        b_task = asyncio.create_task(b.run())  # a second pod joins: a's partitions are split
        await wait_until(lambda: series_follow_ownership(a, b))
        assert owned(a) | owned(b) == every and not owned(a) & owned(b) and owned(a) != every
        lag_a = exported("arrears_consumer_lag", a.service)
        assert lag_a | exported("arrears_consumer_lag", b.service) == every
        assert not lag_a & exported("arrears_consumer_lag", b.service), "a partition's lag is counted twice"

        b.stop()  # b leaves: a owns everything again, b exports nothing
        await asyncio.wait_for(b_task, 30)
        assert exported("arrears_consumer_lag", b.service) == set()
        assert exported("arrears_consumer_processing_delay_seconds", b.service) == set()

        async def a_owns_everything() -> bool:
            return owned(a) == every and await series_follow_ownership(a)

        await wait_until(a_owns_everything)
    finally:
        a.stop()
        if b_task is not None and not b_task.done():
            b.stop()
            await asyncio.wait_for(b_task, 30)
        await asyncio.wait_for(a_task, 30)
        await engine.dispose()
    assert exported("arrears_consumer_lag", a.service) == set()  # a stopped consumer owns nothing


async def test_processing_delay_is_the_age_of_the_record_in_hand_while_blocked(broker, pg) -> None:
    url = pg.create_database(unique("db"))
    schema, topic, group = unique("svc"), unique("in"), unique("grp")
    await create_topics(broker.bootstrap_servers, [topic, dlq_topic(topic, group)])
    await create_schema(url, schema)
    release = asyncio.Event()
    started = asyncio.Event()

    async def blocked(events: Sequence[Envelope], tx: Transaction) -> None:
        started.set()
        await release.wait()

    # a record published an hour ago (its Kafka timestamp), still unprocessed
    rec = encode(account_changed(1), source="test", id="ev-old")
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, rec.value, key=rec.key, headers=rec.headers, timestamp_ms=int((time.time() - 3600) * 1000)
        )
    finally:
        await producer.stop()
    engine = make_engine(url)
    service = unique("svc_delay")
    r = StreamRunner(
        group=group,
        topics=[topic],
        handler=blocked,
        engine=engine,
        schema=schema,
        settings=settings(broker.bootstrap_servers, url),
        service=service,
    )
    task = asyncio.create_task(r.run())

    def delay() -> float | None:
        return REGISTRY.get_sample_value(
            "arrears_consumer_processing_delay_seconds",
            {"service": service, "topic": topic, "partition": "0"},
        )

    try:
        await asyncio.wait_for(started.wait(), 30)
        first = delay()
        assert first is not None and 3600 <= first < 3600 + 60
        await asyncio.sleep(1.1)
        second = delay()
        assert second is not None and second >= first + 1, "the delay must grow while the loop is blocked"
        release.set()

        async def caught_up() -> bool:
            return delay() == 0.0

        await wait_until(caught_up)
    finally:
        release.set()
        r.stop()
        await asyncio.wait_for(task, 30)
        await engine.dispose()


async def test_outbox_reports_the_age_of_its_oldest_unpublished_row(broker, pg) -> None:
    url = pg.create_database(unique("db"))
    schema, topic = unique("svc"), unique("out")
    await create_topics(broker.bootstrap_servers, [topic])
    await create_schema(url, schema)
    engine = make_engine(url)
    async with engine.begin() as conn:  # committed 40 minutes ago, never published
        await conn.execute(
            text(
                f"INSERT INTO {schema}.outbox (topic, key, value, headers, created_at) "
                "VALUES (:t, 'k', 'v', '[]', now() - interval '40 minutes')"
            ),
            {"t": topic},
        )
    s = settings(broker.bootstrap_servers, url)
    producer = make_producer(s, "test-relay")
    service = unique("svc_outbox")
    relay = OutboxRelay(engine=engine, schema=schema, producer=producer, settings=s, service=service)

    def age() -> float | None:
        return REGISTRY.get_sample_value("arrears_outbox_oldest_age_seconds", {"service": service})

    assert age() == 0.0
    try:
        async with engine.connect() as conn:
            await relay._housekeeping(conn)  # what the active relay does every 5 s, before it drains
        aged = age()
        assert aged is not None and 40 * 60 <= aged < 41 * 60
        assert REGISTRY.get_sample_value("arrears_outbox_backlog", {"service": service}) == 1
        await producer.start()
        relay_task = asyncio.create_task(relay.run())
        try:

            async def published() -> bool:
                relay._last_housekeeping = 0.0  # measure again at once
                return age() == 0.0

            await wait_until(published)
        finally:
            relay.stop()
            await asyncio.wait_for(relay_task, 30)
    finally:
        await producer.stop()
        await engine.dispose()
    assert telemetry.OUTBOX_OLDEST_AGE  # the gauge the relay reports through
