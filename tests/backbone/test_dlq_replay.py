"""Operators replay dead letters: the record is applied exactly once, however often it is replayed."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Sequence

from arrears_cli.__main__ import app as cli_app
from arrears_shared.cloudevents import Envelope, encode
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.dlq import Filter, replay, scan
from arrears_shared.stream.relay import OutboxRelay, make_producer
from arrears_shared.stream.runner import StreamRunner
from arrears_shared.stream.transaction import Transaction
from arrears_shared.topics import dlq_topic
from sqlalchemy import text
from typer.testing import CliRunner

from .factories import account_changed
from .support import create_schema, create_topics, produce, scalar, settings, unique, wait_until


async def test_replay_applies_once_and_a_second_replay_is_a_no_op(broker, pg) -> None:
    url = pg.create_database(unique("db"))
    schema, topic, group = unique("svc"), unique("in"), unique("grp")
    dlq = dlq_topic(topic, group)
    other_group = unique("other")  # a second service on the same topic
    other_dlq = dlq_topic(topic, other_group)
    await create_topics(broker.bootstrap_servers, [topic, dlq, other_dlq])
    await create_schema(url, schema)
    broken = {"on": True}

    async def handler(events: Sequence[Envelope], tx: Transaction) -> None:
        for env in events:
            if broken["on"] and env.data.account_id == "PME-000042":
                raise RuntimeError("downstream bug for PME-000042")
            await tx.conn.execute(
                text(f"INSERT INTO {schema}.applied VALUES (:i, :a)"), {"i": env.id, "a": env.data.account_id}
            )

    recs = [encode(account_changed(i), source="t", id=f"r-{i}") for i in (41, 42, 43)]
    await produce(broker.bootstrap_servers, topic, [(r.key, r.value, r.headers) for r in recs])
    s = settings(broker.bootstrap_servers, url)
    engine = make_engine(url)
    producer = make_producer(s, "t")
    await producer.start()
    relay = OutboxRelay(engine=engine, schema=schema, producer=producer, settings=s, service="t")
    runner = StreamRunner(
        group=group, topics=[topic], handler=handler, engine=engine, schema=schema, settings=s
    )

    # a second service on the same topic that also cannot handle PME-000042 (its own DLQ gets it once)
    other_schema = unique("svc")
    await create_schema(url, other_schema)

    async def other_handler(events: Sequence[Envelope], tx: Transaction) -> None:
        if any(env.data.account_id == "PME-000042" for env in events):
            raise RuntimeError("the other service rejects PME-000042 too")

    other = StreamRunner(
        group=other_group,
        topics=[topic],
        handler=other_handler,
        engine=engine,
        schema=other_schema,
        settings=s,
    )
    other_producer = make_producer(s, "o")  # one producer per relay, as in a service
    await other_producer.start()
    other_relay = OutboxRelay(
        engine=engine, schema=other_schema, producer=other_producer, settings=s, service="o"
    )
    tasks = [asyncio.create_task(x.run()) for x in (runner, relay, other, other_relay)]
    kafka = {"bootstrap_servers": broker.bootstrap_servers}
    try:

        async def dead_count() -> bool:
            return len(await scan(kafka, Filter(topics=(dlq,)))) == 1

        await wait_until(dead_count)
        assert await scalar(
            url, f"SELECT string_agg(account_id, ',' ORDER BY account_id) FROM {schema}.applied"
        ) == ("PME-000041,PME-000043")
        reported: list[tuple[int, int]] = []
        [dead] = await scan(
            kafka,
            Filter(topics=(dlq,), reason_contains="downstream bug", account_id="PME-000042"),
            on_progress=lambda read, total: reported.append((read, total)),
        )
        assert reported and reported[-1] == (1, 1)
        assert dead.original_topic == topic and dead.h["ce_id"] == "r-42"
        assert await scan(kafka, Filter(topics=(dlq,), reason_contains="no such reason")) == []

        async def other_dead() -> bool:
            return len(await scan(kafka, Filter(topics=(other_dlq,)))) == 1

        await wait_until(other_dead)
        broken["on"] = False  # the bug is fixed; the operator replays
        assert await replay(kafka, [dead]) == 1

        async def applied(n: int) -> bool:
            return await scalar(url, f"SELECT count(*) FROM {schema}.applied") == n

        await wait_until(lambda: applied(3))
        # replayed again by mistake, this time by an operator with the CLI (progress on stderr), which
        # writes the replay to the console's audit log
        await asyncio.to_thread(upgrade, url, "console")
        out = await asyncio.to_thread(
            CliRunner().invoke,
            cli_app,
            ["dlq", "replay", "--topic", dlq, "--yes", "--progress"],
            env={"ARREARS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers, "ARREARS_DATABASE_URL": url},
        )
        assert out.exit_code == 0 and "replayed 1 record(s)" in out.stdout, out.output
        assert await scalar(
            url, "SELECT actor || ' ' || action || ' ' || (after->>'count') FROM console.audit_log"
        ) == (f"cli:{getpass.getuser()} dlq.replay_set 1")
        assert "reading dead-letter topics (1 records)" in out.stderr and "replaying" in out.stderr
        assert "1/1" in out.stderr, out.stderr
        await asyncio.sleep(1.5)
        assert await applied(3)
        assert await scalar(url, f"SELECT count(*) FROM {schema}.applied WHERE ce_id = 'r-42'") == 1
        # the replays were addressed to `group`: the other service skipped them instead of failing again
        assert len(await scan(kafka, Filter(topics=(other_dlq,)))) == 1
    finally:
        for x in (runner, relay, other, other_relay):
            x.stop()
        await asyncio.gather(*tasks)
        await producer.stop()
        await other_producer.stop()
        await engine.dispose()
