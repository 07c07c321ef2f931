"""Segmenter benchmark: 100,000 accounts through the real consumer path, then a timer tick.

On the embedded broker (Tansu) and embedded PostgreSQL with the settings `arrears up` uses (fsync on):
  plan_s     = 100,000 account-changed events already on the topic, consumed by the segmenter's
               StreamRunner (batch -> one transaction: inbox claim + set-based projection, segments, aging,
               planning, timers, decisions -> offset commit): runner start -> every account planned;
  tick_10k_s = the timer loop's work (the same `tick` the service runs, default batch size and workers, one
               transaction per batch, `FOR UPDATE SKIP LOCKED`) until 10,000 notice-due events are in the
               outbox: compliance gate per channel, campaign pick, notice ledger, decisions, next step planned.
The last line printed is exactly:
  BENCH segmenter accounts=<n> plan_s=<s> tick_10k_s=<s>

The events are sealed as ingest publishes them (personal fields encrypted, one data key per account);
BENCH_PLAINTEXT=1 produces them unsealed, to measure what the vault costs.

Usage: python bench/segmenter.py [--accounts 100000] [--partitions 6] [--fast-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from arrears_cli.stack.broker import EmbeddedBroker
from arrears_cli.stack.postgres import EmbeddedPostgres
from arrears_segmenter.consumer import make_handler
from arrears_segmenter.deps import Deps
from arrears_segmenter.schedule.models import load_policy
from arrears_segmenter.settings import SegmenterSettings
from arrears_segmenter.timers.scheduled import tick
from arrears_shared import topics
from arrears_shared.clock import Clock
from arrears_shared.cloudevents import Envelope, OutgoingRecord, encode
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.events import AccountChanged
from arrears_shared.stream.runner import StreamRunner
from arrears_shared.stream.transaction import Transaction
from arrears_shared.vault.records import seal_records  # noqa: E402
from common import create_topics, ensure_stack_keys, produce_all  # noqa: E402  (bench/ is on sys.path)
from sqlalchemy import text

NOOP = bool(os.environ.get("BENCH_NOOP"))
PLAINTEXT = bool(os.environ.get("BENCH_PLAINTEXT"))  # events unsealed, as before #16: the cost of the vault
NOW = datetime(2026, 5, 6, 16, 0, tzinfo=UTC)  # Wednesday: 12:00 New York, 17:00 London, 21:30 Kolkata
PLACES = [
    ("America/New_York", "US", "NY"),
    ("America/Chicago", "US", "IL"),
    ("America/Denver", "US", "CO"),
    ("America/Los_Angeles", "US", "CA"),
    ("Europe/London", "GB", None),
    ("Asia/Kolkata", "IN", None),  # after 19:00 there: deferred by the gate
    (None, "US", "TX"),  # zone unknown: every candidate zone must allow
]


def accounts(n: int, seed: int = 7) -> list[OutgoingRecord]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        tz, country, region = PLACES[i % len(PLACES)]
        ev = AccountChanged(
            account_id=f"B{i:07d}",
            change="created",
            source="sheet",
            source_row=i + 2,
            customer_name=f"Customer {i}",
            phone=f"+1415{i:07d}",
            email=f"c{i}@example.com",
            balance_minor=rnd.choice([rnd.randint(1_000, 900_000), rnd.randint(1_000, 90_000)])
            if i % 50
            else 2_000_000,  # 2% above the approval threshold: held for a person
            currency="USD",
            due_date=(NOW - timedelta(days=rnd.randint(-20, 150))).date(),
            timezone=tz,
            country=country,
            region=region,
            sms_consent=i % 10 != 0,
            email_consent=True,
            content_hash=f"h{i}",
            as_of=NOW - timedelta(days=1),
        )
        out.append(encode(ev, source="bench", id=f"acct-{i}"))
    return out


async def count(url_engine, sql: str) -> int:  # type: ignore[no-untyped-def]
    async with url_engine.connect() as c:
        return int((await c.execute(text(sql))).scalar_one())


async def wait_committed(engine, n: int) -> None:  # type: ignore[no-untyped-def]
    """The handler has seen every event; wait for the runner to commit the last batch."""
    while True:
        if await count(engine, "SELECT count(*) FROM segmenter.inbox") >= n:
            return
        await asyncio.sleep(0.02)


async def bench_plan(bootstrap: str, url: str, n: int, partitions: int, deps: Deps) -> float:
    await create_topics(
        bootstrap, [topics.ACCOUNT_CHANGED, f"{topics.ACCOUNT_CHANGED}.segmenter.dlq"], partitions
    )
    recs = accounts(n)
    if not PLAINTEXT:  # as ingest publishes them: personal fields sealed, a data key per account in the vault
        engine = make_engine(url)
        async with engine.begin() as conn:
            recs = await seal_records(conn, recs)
        await engine.dispose()
    await produce_all(bootstrap, topics.ACCOUNT_CHANGED, recs)  # on the broker before timing starts
    settings = SegmenterSettings(
        service_name="segmenter", kafka_bootstrap_servers=bootstrap, database_url=url
    )
    engine = make_engine(url, pool_size=4)
    inner = make_handler(deps)
    seen = 0
    done = asyncio.Event()

    async def handler(events: Sequence[Envelope], tx: Transaction) -> None:
        nonlocal seen
        if not NOOP:
            await inner(events, tx)
        seen += len(events)
        if seen >= n:
            done.set()

    runner = StreamRunner(
        group="segmenter",
        topics=[topics.ACCOUNT_CHANGED],
        handler=handler,
        engine=engine,
        schema="segmenter",
        settings=settings,
    )
    t0 = time.monotonic()
    task = asyncio.create_task(runner.run())
    await done.wait()
    await wait_committed(engine, n)
    t1 = time.monotonic()
    runner.stop()
    await task
    planned = await count(engine, "SELECT count(DISTINCT account_id) FROM segmenter.timers")
    due = await count(
        engine,
        f"SELECT count(*) FROM segmenter.timers WHERE state='pending' AND due_at <= '{NOW.isoformat()}'",
    )
    print(
        f"plan: {n} accounts in {t1 - t0:.2f}s ({n / (t1 - t0):,.0f}/s); {planned} with a timer, {due} due now",
        flush=True,
    )
    await engine.dispose()
    return t1 - t0


async def bench_tick(url: str, deps: Deps, target: int, workers: int) -> float:
    """The service's timer loop under backlog: `workers` concurrent workers, each firing batches of due
    timers (one transaction each, SKIP LOCKED) until `target` notices are in the outbox."""
    engine = make_engine(url, pool_size=4 + workers)
    t0 = time.monotonic()
    ticks = handled = 0

    async def worker() -> None:
        nonlocal ticks, handled
        while (
            await count(engine, "SELECT count(*) FROM segmenter.outbox WHERE topic = 'notice-due'") < target
        ):
            got = await tick(engine, "segmenter", "segmenter", deps, NOW)
            handled, ticks = handled + got, ticks + 1

    await asyncio.gather(*(worker() for _ in range(workers)))
    t1 = time.monotonic()
    emitted = await count(engine, "SELECT count(*) FROM segmenter.outbox WHERE topic = 'notice-due'")
    held = await count(engine, "SELECT count(*) FROM segmenter.timers WHERE state = 'held'")
    deferred = await count(engine, "SELECT count(*) FROM segmenter.decisions WHERE outcome = 'deferred'")
    print(
        f"tick: {emitted} notice-due from {handled} timers in {ticks} batches of <= {deps.timer_batch} "
        f"({workers} workers), {t1 - t0:.2f}s; {held} held for approval, {deferred} deferrals recorded",
        flush=True,
    )
    await engine.dispose()
    return t1 - t0


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--notices", type=int, default=10_000)
    ap.add_argument("--fast-postgres", action="store_true", help="fsync off (not what `arrears up` uses)")
    args = ap.parse_args()
    s = SegmenterSettings(service_name="segmenter")
    deps = Deps(policy=load_policy(), clock=Clock(fixed=NOW), timer_batch=s.segmenter_timer_batch)
    with (
        tempfile.TemporaryDirectory(prefix="bench") as d,
        EmbeddedBroker() as broker,
        EmbeddedPostgres(Path(d) / "pg", fast=args.fast_postgres) as pg,
    ):
        url = pg.create_database("bench")
        await asyncio.to_thread(upgrade, url, "segmenter")
        plan_s = await bench_plan(broker.bootstrap_servers, url, args.accounts, args.partitions, deps)
        tick_s = await bench_tick(url, deps, args.notices, s.segmenter_timer_workers)
    # after the stack has stopped, so that its shutdown logs cannot follow the result line
    print(f"BENCH segmenter accounts={args.accounts} plan_s={plan_s:.2f} tick_10k_s={tick_s:.2f}", flush=True)


if __name__ == "__main__":
    ensure_stack_keys()
    asyncio.run(main())
