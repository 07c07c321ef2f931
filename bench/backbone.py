"""Backbone benchmark: raw aiokafka produce+consume vs one effectively-once service hop.

On the embedded broker (Tansu) and embedded PostgreSQL, with the same settings `arrears up` uses
(durable Postgres: fsync on):
  raw  = N CloudEvents produced (acks=all) and consumed by a consumer group, first send -> last receive;
  hop  = the same N events already on an input topic, consumed by the shared StreamRunner
         (batch -> one DB transaction: inbox claim + handler + outbox write -> offset commit),
         published by the OutboxRelay to the next topic and received there: runner start -> last receive.
In both, the receiving consumer runs in its own process (as the next service would), so it does not take
CPU from the code being measured.
The last line printed is exactly:
  BENCH backbone raw_per_s=<n> hop_per_s=<n> ratio=<hop/raw>

Usage: python bench/backbone.py [--events 100000] [--partitions 6] [--fast-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from arrears_cli.stack.broker import EmbeddedBroker
from arrears_cli.stack.postgres import EmbeddedPostgres
from arrears_shared.cloudevents import Envelope, OutgoingRecord, encode
from arrears_shared.db.engine import make_engine
from arrears_shared.db.runner_tables import runner_tables_ddl
from arrears_shared.settings import ServiceSettings
from arrears_shared.stream.relay import OutboxRelay, make_producer
from arrears_shared.stream.runner import StreamRunner
from arrears_shared.stream.transaction import Transaction
from common import create_topics, ensure_stack_keys, produce_all  # noqa: E402  (bench/ is on sys.path)
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.backbone.factories import account_changed  # noqa: E402


def records(n: int) -> list[OutgoingRecord]:
    return [encode(account_changed(i % 20_000), source="bench", id=f"b-{i}") for i in range(n)]


def cpu_by_program() -> dict[str, float]:
    """CPU seconds used so far by each program on the machine (postgres, tansu, python...)."""
    import psutil

    out: dict[str, float] = {}
    for proc in psutil.process_iter(["name", "cpu_times"]):
        times = proc.info["cpu_times"]
        if times is not None:
            name = str(proc.info["name"]).split("-")[0]
            out[name] = out.get(name, 0.0) + times.user + times.system
    return out


async def count_until(bootstrap: str, topic: str, n: int, group: str) -> None:
    """Child process: consume `topic` until n distinct ce_ids arrived. Prints READY once partitions are
    assigned, then DONE <monotonic time of the last record> (CLOCK_MONOTONIC is shared by processes)."""
    c = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 << 20,
        fetch_max_bytes=32 << 20,
    )
    await c.start()
    seen: set[bytes] = set()
    try:
        while not c.assignment():
            await c.getmany(timeout_ms=50)
        print("READY", flush=True)
        while len(seen) < n:
            batch = await c.getmany(timeout_ms=500, max_records=20_000)
            for recs in batch.values():
                for r in recs:
                    seen.add(dict(r.headers)["ce_id"])
        print(f"DONE {time.monotonic()!r}", flush=True)
    finally:
        await c.stop()


class Receiver:
    """The receiving side in its own process (as the next service would be), so that it does not take CPU
    from the code being measured."""

    def __init__(self, bootstrap: str, topic: str, n: int, group: str) -> None:
        self.args = [bootstrap, topic, str(n), group]
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Receiver:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--count", *self.args, stdout=asyncio.subprocess.PIPE
        )
        line = await self._line()
        if line != "READY":
            raise RuntimeError(f"counter did not start: {line!r}")
        return self

    async def _line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        return (await self.proc.stdout.readline()).decode().strip()

    async def done_at(self) -> float:
        line = await self._line()
        if not line.startswith("DONE "):
            raise RuntimeError(f"counter failed: {line!r}")
        return float(line.split()[1])

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def bench_raw(bootstrap: str, n: int, partitions: int) -> float:
    await create_topics(bootstrap, ["bench-raw"], partitions)
    recs = records(n)
    async with Receiver(bootstrap, "bench-raw", n, "bench-raw-g") as counter:
        t0 = time.monotonic()
        await produce_all(bootstrap, "bench-raw", recs)
        t1 = await counter.done_at()
    return n / (t1 - t0)


async def bench_hop(bootstrap: str, url: str, n: int, partitions: int) -> float:
    await create_topics(bootstrap, ["bench-in", "bench-out", "bench-in.bench-hop.dlq"], partitions)
    schema = "bench_hop"
    engine = make_engine(url, pool_size=4)
    async with engine.begin() as c:
        await c.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        await c.execute(text(f"CREATE SCHEMA {schema}"))
        for stmt in runner_tables_ddl(schema):
            await c.execute(text(stmt))
    await produce_all(bootstrap, "bench-in", records(n))  # input is on the broker before timing starts

    async def forward(events: Sequence[Envelope], tx: Transaction) -> None:
        for env in events:  # the hop's domain work: emit one event per event, as a service does
            tx.emit(env.data, id=f"fwd-{env.id}")
        # the bench's next topic is not the event type's own topic
        tx.records = [OutgoingRecord("bench-out", r.key, r.value, r.headers) for r in tx.records]

    settings = ServiceSettings(kafka_bootstrap_servers=bootstrap, database_url=url, runner_max_batch=5000)
    producer = make_producer(settings, "bench-relay")
    await producer.start()
    relay = OutboxRelay(
        engine=engine, schema=schema, producer=producer, settings=settings, service="bench-hop"
    )
    runner = StreamRunner(
        group="bench-hop",
        topics=["bench-in"],
        handler=forward,
        engine=engine,
        schema=schema,
        settings=settings,
        on_commit=relay.wake,
    )
    # join the consumer group before the clock starts (as the raw consumer does): a group join takes a few
    # seconds on the embedded broker and is start-up cost, not throughput
    await runner.start()
    while not runner.state.assigned:  # noqa: ASYNC110 - set by the consumer's rebalance callback
        await asyncio.sleep(0.02)
    async with Receiver(bootstrap, "bench-out", n, "bench-out-g") as counter:
        t0 = time.monotonic()
        cpu0, load0 = time.process_time(), cpu_by_program()
        tasks = [asyncio.create_task(runner.run()), asyncio.create_task(relay.run())]
        t1 = await counter.done_at()
        cpu = time.process_time() - cpu0
        others = {
            k: round(v - load0.get(k, 0.0), 2)
            for k, v in cpu_by_program().items()
            if k in ("postgres", "tansu", "python") and v - load0.get(k, 0.0) >= 0.01
        }
        print(
            f"  hop: {cpu:.2f} s CPU in the service process over {t1 - t0:.2f} s; CPU s by program: {others}"
        )
    runner.stop()
    relay.stop()
    await asyncio.gather(*tasks)
    await producer.stop()
    await engine.dispose()
    return n / (t1 - t0)


async def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--count":
        bootstrap, topic, n, group = sys.argv[2:6]
        await count_until(bootstrap, topic, int(n), group)
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--fast-postgres", action="store_true", help="fsync off (not what `arrears up` uses)")
    args = ap.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="bench") as d,
        EmbeddedBroker() as broker,
        EmbeddedPostgres(Path(d) / "pg", fast=args.fast_postgres) as pg,
    ):
        url = pg.create_database("bench")
        raw = await bench_raw(broker.bootstrap_servers, args.events, args.partitions)
        print(f"raw produce+consume: {args.events} events, {raw:,.0f}/s", flush=True)
        hop = await bench_hop(broker.bootstrap_servers, url, args.events, args.partitions)
        print(f"one hop (runner -> inbox+outbox txn -> relay -> next topic): {hop:,.0f}/s", flush=True)
    # after the stack has stopped, so that its shutdown logs cannot follow the result line
    print(f"BENCH backbone raw_per_s={raw:.0f} hop_per_s={hop:.0f} ratio={hop / raw:.3f}", flush=True)


if __name__ == "__main__":
    ensure_stack_keys()
    asyncio.run(main())
