"""The stream runner and outbox relay on the real broker and real PostgreSQL, with injected faults."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from aiokafka import AIOKafkaConsumer, TopicPartition
from arrears_shared.cloudevents import decode, encode, header_map
from arrears_shared.db.engine import make_engine
from arrears_shared.stream import dead_letter as dl
from arrears_shared.stream import outbox
from arrears_shared.stream.relay import OutboxRelay, make_producer
from arrears_shared.stream.runner import StreamRunner
from arrears_shared.topics import dlq_topic
from sqlalchemy import text

from .factories import account_changed
from .support import (
    consume_all,
    create_schema,
    create_topics,
    open_record,
    produce,
    recording_handler,
    scalar,
    settings,
    unique,
    valid_records,
    wait_until,
)

PROCS = Path(__file__).with_name("procs.py")


async def committed(bootstrap: str, group: str, topic: str) -> int | None:
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        return await c.committed(TopicPartition(topic, 0))
    finally:
        await c.stop()


async def test_poison_records_go_to_the_dlq_with_headers_and_the_partition_keeps_flowing(broker, pg) -> None:
    url = pg.create_database(unique("db"))
    schema, topic, group = unique("svc"), unique("in"), unique("grp")
    dlq = dlq_topic(topic, group)
    await create_topics(broker.bootstrap_servers, [topic, dlq])
    await create_schema(url, schema)
    good = valid_records(2)
    bad_value = encode(account_changed(7), source="test", id="ev-bad")
    poison = encode(account_changed(99), source="test", id="ev-poison")
    await produce(
        broker.bootstrap_servers,
        topic,
        [
            good[0],
            (b"PME-000007", b"{not json", bad_value.headers),  # schema-invalid: straight to the DLQ
            (poison.key, poison.value, poison.headers),  # the handler always raises: DLQ after 3 attempts
            (b"x", b"no headers at all", []),  # not a CloudEvent
            good[1],
        ],
    )
    engine = make_engine(url)
    runner = StreamRunner(
        group=group,
        topics=[topic],
        handler=recording_handler(schema, None, poison="PME-000099"),
        engine=engine,
        schema=schema,
        settings=settings(broker.bootstrap_servers, url),
    )
    task = asyncio.create_task(runner.run())
    try:
        await wait_until(lambda: _eq(scalar(url, f"SELECT count(*) FROM {schema}.applied"), 2))
        relay = OutboxRelay(
            engine=engine,
            schema=schema,
            producer=await _started(broker, url),
            settings=runner.settings,
            service="t",
        )
        rtask = asyncio.create_task(relay.run())
        dead = await consume_all(broker.bootstrap_servers, dlq, expect=3)
        relay.stop()
        await rtask
        await relay.producer.stop()
        await wait_until(lambda: _eq(committed(broker.bootstrap_servers, group, topic), 5))
    finally:
        runner.stop()
        await task
        await engine.dispose()

    assert (
        await scalar(url, f"SELECT string_agg(ce_id, ',' ORDER BY ce_id) FROM {schema}.applied")
        == "ev-0,ev-1"
    )
    assert len(dead) == 3
    by_offset = {int(header_map(r.headers)[dl.ORIGINAL_OFFSET]): r for r in dead}
    assert set(by_offset) == {1, 2, 3}
    for _off, rec in by_offset.items():
        h = header_map(rec.headers)
        assert h[dl.ORIGINAL_TOPIC] == topic
        assert h[dl.ORIGINAL_PARTITION] == "0"
        assert h[dl.ORIGINAL_GROUP] == group and h[dl.SERVICE] == group
        assert h[dl.EXCEPTION_MESSAGE] and h[dl.EXCEPTION_STACKTRACE] and h[dl.DEAD_LETTERED_AT]
        assert h[dl.ORIGINAL_TIMESTAMP].isdigit()
    assert header_map(by_offset[1].headers)[dl.EXCEPTION_FQCN] == "arrears_shared.cloudevents.InvalidEvent"
    assert header_map(by_offset[1].headers)[dl.ATTEMPTS] == "1"
    assert header_map(by_offset[2].headers)[dl.EXCEPTION_FQCN] == "builtins.ValueError"
    assert header_map(by_offset[2].headers)[dl.ATTEMPTS] == "3"
    assert header_map(by_offset[2].headers)["ce_id"] == "ev-poison"  # kept, so a replay is deduplicated
    # the dead letter keeps the event (a replay applies it) but never its personal data in clear
    assert by_offset[2].key == poison.key
    sealed = by_offset[2].value
    assert b'"customer_name":"pii1:' in sealed and b'"phone":"pii1:' in sealed
    poisoned = decode(poison.headers, poison.value)
    assert poisoned.data.customer_name.encode() not in sealed  # type: ignore[attr-defined]
    assert (await open_record(url, by_offset[2].headers, sealed)).data == poisoned.data


async def test_crash_after_db_commit_before_offset_commit_redelivers_and_changes_nothing(broker, pg) -> None:
    url = pg.create_database(unique("db"))
    schema, topic, group, out = unique("svc"), unique("in"), unique("grp"), unique("out")
    await create_topics(broker.bootstrap_servers, [topic, out, dlq_topic(topic, group)])
    await create_schema(url, schema)
    n = 60
    await produce(broker.bootstrap_servers, topic, valid_records(n))

    proc = subprocess.run(  # noqa: ASYNC221 - the test blocks on purpose until the child is killed
        [
            sys.executable,
            str(PROCS),
            "runner-crash-before-offset-commit",
            broker.bootstrap_servers,
            url,
            schema,
            topic,
            group,
            out,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    applied_before = await scalar(url, f"SELECT count(*) FROM {schema}.applied")
    assert 0 < applied_before < n  # the first batch committed in the DB ...
    assert await committed(broker.bootstrap_servers, group, topic) is None  # ... but not in Kafka

    engine = make_engine(url)
    runner = StreamRunner(
        group=group,
        topics=[topic],
        handler=recording_handler(schema, out),
        engine=engine,
        schema=schema,
        settings=settings(broker.bootstrap_servers, url),
    )
    task = asyncio.create_task(runner.run())
    try:
        await wait_until(lambda: _eq(committed(broker.bootstrap_servers, group, topic), n))
    finally:
        runner.stop()
        await task
        await engine.dispose()
    assert await scalar(url, f"SELECT count(*) FROM {schema}.applied") == n
    assert await scalar(url, f"SELECT count(DISTINCT ce_id) FROM {schema}.applied") == n
    assert await scalar(url, f"SELECT count(*) FROM {schema}.outbox") == n
    assert await scalar(url, f"SELECT count(*) FROM {schema}.inbox") == n


async def test_relay_publishes_exactly_the_committed_events_after_kill_9(broker, pg) -> None:
    url = pg.create_database(unique("db"))
    schema, out = unique("svc"), unique("out")
    await create_topics(broker.bootstrap_servers, [out], partitions=3)
    await create_schema(url, schema)
    n = 6000
    engine = make_engine(url)
    committed_ids = set()
    for start in range(0, n, 1000):
        async with engine.begin() as conn:
            recs = []
            for i in range(start, start + 1000):
                rec = encode(account_changed(i % 50), source="t", id=f"c-{i}")
                recs.append(type(rec)(out, rec.key, rec.value, rec.headers))
                committed_ids.add(f"c-{i}")
            await outbox.write(conn, schema, recs)
    try:  # an event written in a transaction that rolls back must never be published
        async with engine.begin() as conn:
            rec = encode(account_changed(1), source="t", id="rolled-back")
            await outbox.write(conn, schema, [type(rec)(out, rec.key, rec.value, rec.headers)])
            raise RuntimeError("roll back")
    except RuntimeError:
        pass

    proc = subprocess.Popen(  # noqa: ASYNC220 - a child to kill -9
        [sys.executable, str(PROCS), "relay", broker.bootstrap_servers, url, schema],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        await wait_until(
            lambda: _ge(
                scalar(url, f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NOT NULL"), 500
            ),
            timeout=30,
            interval=0.01,
        )
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    published_before = await scalar(
        url, f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NOT NULL"
    )
    assert published_before < n, "kill -9 came too late to prove anything"

    s = settings(broker.bootstrap_servers, url)
    producer = make_producer(s, "relay-2")
    await producer.start()
    relay = OutboxRelay(engine=engine, schema=schema, producer=producer, settings=s, service="t")
    task = asyncio.create_task(relay.run())
    try:
        await wait_until(
            lambda: _eq(scalar(url, f"SELECT count(*) FROM {schema}.outbox WHERE published_at IS NULL"), 0)
        )
    finally:
        relay.stop()
        await task
        await producer.stop()
        await engine.dispose()

    got = await consume_all(broker.bootstrap_servers, out, expect=n)
    ids = [header_map(r.headers)["ce_id"] for r in got]
    assert set(ids) == committed_ids  # nothing lost, nothing uncommitted
    # Per key, the first occurrence of each event keeps the write order (consumers drop re-sends by ce_id).
    seen: dict[bytes, list[int]] = {}
    firsts: set[str] = set()
    for r in got:
        ce_id = header_map(r.headers)["ce_id"]
        if ce_id not in firsts:
            firsts.add(ce_id)
            seen.setdefault(r.key, []).append(int(ce_id.split("-")[1]))
    assert all(v == sorted(v) for v in seen.values())


async def _started(broker, url):  # type: ignore[no-untyped-def]
    p = make_producer(settings(broker.bootstrap_servers, url), "t")
    await p.start()
    return p


async def _eq(aw, v) -> bool:  # type: ignore[no-untyped-def]
    return (await aw) == v


async def _ge(aw, v) -> bool:  # type: ignore[no-untyped-def]
    return (await aw) >= v


async def test_database_outage_is_waited_out_not_dead_lettered(broker, pg) -> None:
    url = pg.create_database(unique("db"))
    schema, topic, group = unique("svc"), unique("in"), unique("grp")
    await create_topics(broker.bootstrap_servers, [topic, dlq_topic(topic, group)])
    await create_schema(url, schema)
    await produce(broker.bootstrap_servers, topic, valid_records(5))
    engine = make_engine(url)
    admin = make_engine(pg.url)
    # Make the handler's table unreachable at the connection level: revoke LOGIN is too slow to exercise,
    # so terminate every backend of the runner while it works and check nothing is dead-lettered.
    runner = StreamRunner(
        group=group,
        topics=[topic],
        handler=recording_handler(schema, None),
        engine=engine,
        schema=schema,
        settings=settings(broker.bootstrap_servers, url),
    )
    dbname = urlsplit(url).path.lstrip("/")
    async with admin.connect() as c:
        await c.execute(text(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false'))
        await c.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'arrears' AND pid <> pg_backend_pid()"
            )
        )
        await c.commit()
    task = asyncio.create_task(runner.run())
    try:

        async def waiting() -> bool:
            return runner.state.waiting_on_infrastructure is not None

        await wait_until(waiting, timeout=20)  # the runner reports it is waiting for the database
        assert await committed(broker.bootstrap_servers, group, topic) is None
        async with admin.connect() as c:
            await c.execute(text(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true'))
            await c.commit()
        await wait_until(lambda: _eq(scalar(url, f"SELECT count(*) FROM {schema}.applied"), 5))
        await wait_until(lambda: _eq(committed(broker.bootstrap_servers, group, topic), 5))
    finally:
        runner.stop()
        await task
        await engine.dispose()
        await admin.dispose()
    assert await scalar(url, f"SELECT count(*) FROM {schema}.outbox") == 0  # nothing dead-lettered


async def test_a_runner_cancelled_while_joining_its_group_still_closes_its_consumer(broker, pg) -> None:
    """aiokafka's start() waits for the first assignment, which takes a rebalance (every member rejoins), so
    a service stopped in the middle of a join is cancelled there once its shutdown grace runs out: the
    consumer must still be closed and leave the group, or it stays a member in the background, holding
    partitions nobody consumes, and the next instance never sees their records."""
    url = pg.create_database(unique("db"))
    schema, topic, group = unique("svc"), unique("in"), unique("grp")
    await create_topics(broker.bootstrap_servers, [topic, dlq_topic(topic, group)], partitions=3)
    await create_schema(url, schema)
    engine = make_engine(url)

    def runner() -> StreamRunner:
        return StreamRunner(
            group=group,
            topics=[topic],
            handler=recording_handler(schema, None),
            engine=engine,
            schema=schema,
            settings=settings(broker.bootstrap_servers, url),
        )

    try:
        member = runner()  # a member already in the group: a newcomer's join waits until it rejoins
        member_task = asyncio.create_task(member.run())

        async def member_joined() -> bool:
            return member.state.joined

        await wait_until(member_joined)
        late = runner()
        late_task = asyncio.create_task(late.run())

        async def joining() -> bool:  # the group coordinator exists: the join has begun
            return late._consumer is not None and late._consumer._coordinator is not None

        await wait_until(joining, interval=0.005)
        consumer = late._consumer
        assert consumer is not None and not late.state.joined
        late_task.cancel()  # what the service host does when the grace period runs out
        await asyncio.gather(late_task, return_exceptions=True)
        assert consumer._closed, "a cancelled runner left its consumer in the group"
        member.stop()
        await asyncio.wait_for(member_task, 30)

        # the next instance alone in the group gets every partition and applies every record
        await produce(broker.bootstrap_servers, topic, valid_records(6))
        nxt = runner()
        nxt_task = asyncio.create_task(nxt.run())
        try:
            await wait_until(lambda: _eq(scalar(url, f"SELECT count(*) FROM {schema}.applied"), 6))
            assert nxt.state.assigned == {TopicPartition(topic, p) for p in range(3)}
        finally:
            nxt.stop()
            await asyncio.wait_for(nxt_task, 30)
    finally:
        await engine.dispose()
