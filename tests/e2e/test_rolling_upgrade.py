"""A rolling upgrade of the segmenter on the embedded stack, with an expand migration and a new optional
event field, while events flow: nothing lost, nothing duplicated, nothing dead-lettered (docs/upgrades.md).

Two replicas of today's segmenter (`python -m arrears_segmenter`) share the consumer group `segmenter` on a
real broker and PostgreSQL. A producer publishes account changes at a steady rate. Midway the producer is
upgraded first, the worst order: it adds `preferred_language`, a field the running consumers do not know.
Then one replica at a time is replaced by the next release (`next_segmenter.py`: the same service plus an
expand migration and code that stores the new field), so old and new run side by side.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from arrears_cli.stack.broker import EmbeddedBroker
from arrears_cli.stack.platform import StackInfo, service_env
from arrears_cli.stack.ports import free_port
from arrears_cli.stack.processes import ManagedProcess, ProcessSpec, Supervisor, run_coro_sync
from arrears_cli.stack.topics import ensure_topics
from arrears_shared import topology
from arrears_shared.cloudevents import encode
from arrears_shared.db.engine import make_engine
from arrears_shared.events import AccountChanged
from sqlalchemy import text

from .next_segmenter import AccountChanged as NextAccountChanged
from .support import BASE_OVERRIDES

pytestmark = pytest.mark.e2e

PARTITIONS = 3
ACCOUNTS = 24
RATE_PER_S = 30
LAUNCHER = Path(__file__).with_name("next_segmenter.py")


@dataclass
class Feed:
    """The upstream producer: one event per tick, round-robin over the accounts, the balance growing with
    each event so the last one per account is recognisable. `upgraded` switches it to the next release."""

    bootstrap: str
    upgraded: bool = False
    sent: list[tuple[str, str, int, bool]] = field(default_factory=list)  # ce_id, account, balance, new
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def event(self, n: int) -> AccountChanged:
        base: dict[str, Any] = {
            "account_id": f"RU-{n % ACCOUNTS:04d}",
            "change": "created" if n < ACCOUNTS else "updated",
            "source": "sheet",
            "customer_name": "Ada Debtor",
            "phone": "+14155550100",
            "email": "ada@example.com",
            "balance_minor": 10_000 + n,
            "currency": "USD",
            "due_date": date(2026, 3, 1),
            "timezone": "America/New_York",
            "country": "US",
            "region": "NY",
            "sms_consent": True,
            "email_consent": True,
            "content_hash": f"h{n}",
            "as_of": datetime.now(UTC),
        }
        if self.upgraded:
            return NextAccountChanged(**base, preferred_language="es-MX")
        return AccountChanged(**base)

    async def run(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        await producer.start()
        try:
            n = 0
            while not self.stop.is_set():
                ev = self.event(n)
                rec = encode(ev, source="ingest", id=f"ru-{n}")
                await producer.send_and_wait(rec.topic, rec.value, key=rec.key, headers=rec.headers)
                self.sent.append((f"ru-{n}", ev.account_id, ev.balance_minor, self.upgraded))
                n += 1
                await asyncio.sleep(1 / RATE_PER_S)
        finally:
            await producer.stop()


@pytest.fixture()
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of its own: the group `segmenter` starts clean, no other test's records on its topics."""
    supervisor = Supervisor(log_dir=tmp_path / "broker-logs")
    b = EmbeddedBroker(supervisor=supervisor, name="upgrade-broker").start()
    run_coro_sync(lambda: ensure_topics(b.bootstrap_servers, PARTITIONS))
    try:
        yield b
    finally:
        b.stop()
        supervisor.stop_all()


class Replicas:
    """Segmenter replicas as OS processes, old (`python -m arrears_segmenter`) or new (the launcher)."""

    def __init__(self, bootstrap: str, database_url: str, logs: Path, migrations: Path) -> None:
        self.stack = StackInfo(
            bootstrap_servers=bootstrap,
            database_url=database_url,
            quo_base_url="http://127.0.0.1:9",
            gmail_api_endpoint="http://127.0.0.1:9",
            sheets_api_endpoint="http://127.0.0.1:9",
            quo_api_key="unused",
            quo_webhook_signing_key="dW51c2Vk",
            topic_partitions=PARTITIONS,
        )
        self.logs = logs
        self.migrations = migrations
        self.procs: dict[str, ManagedProcess] = {}
        self.ports: dict[str, int] = {}

    def start(self, name: str, *, new: bool) -> ManagedProcess:
        port = free_port("127.0.0.1")
        env = service_env(self.stack, "segmenter", {"segmenter": port}) | BASE_OVERRIDES["segmenter"]
        # the group's rebalance timeout (= max.poll.interval): a member that leaves while the embedded
        # broker is mid-rebalance holds the group for at most this long, not the default 5 minutes
        env["ARREARS_RUNNER_MAX_POLL_INTERVAL_MS"] = "15000"
        argv = (
            [sys.executable, str(LAUNCHER), str(self.migrations)]
            if new
            else [sys.executable, "-m", topology.service("segmenter").package]
        )
        proc = ManagedProcess(ProcessSpec(name=name, argv=argv, env=env, log_file=self.logs / f"{name}.log"))
        self.procs[name], self.ports[name] = proc.start(), port
        return proc

    def wait_ready(self, name: str, timeout: float = 90.0) -> None:
        self.procs[name].wait_http_ok(f"http://127.0.0.1:{self.ports[name]}/readyz", timeout=timeout)

    def stop(self, name: str) -> int | None:
        """SIGTERM, as a rolling update does: finish the batch, commit, leave the group."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=20)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.is_alive():
                proc.stop()

    def dump(self) -> None:
        for name, proc in self.procs.items():
            print(f"----- {name} -----")
            for line in proc.recent_output(40):
                print(line)


async def _rows(url: str, sql: str) -> list[Any]:
    engine = make_engine(url)
    try:
        async with engine.connect() as c:
            return list((await c.execute(text(sql))).all())
    finally:
        await engine.dispose()


async def _processed(url: str) -> set[str]:
    return {r[0] for r in await _rows(url, "SELECT ce_id FROM segmenter.inbox")}


async def _stored_by_new(url: str) -> set[str]:
    try:
        return {r[0] for r in await _rows(url, "SELECT ce_id FROM segmenter.account_languages")}
    except Exception:  # the expand migration has not run yet
        return set()


async def _until(cond, what: str, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]  # noqa: ASYNC109
    deadline = asyncio.get_running_loop().time() + timeout
    while not await cond():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def _records(bootstrap: str, topics: list[str]) -> list[Any]:
    """Every record on `topics` (from the start to the end offsets at call time)."""
    if not topics:  # e.g. an outbox the relay has emptied: nothing to read
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        out: list[Any] = []
        while [tp for tp in parts if await consumer.position(tp) < end[tp]]:
            for recs in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(recs)
        return out
    finally:
        await consumer.stop()


async def test_rolling_upgrade_with_expand_migration_and_new_optional_field_loses_and_duplicates_nothing(
    own_broker: EmbeddedBroker, fresh_database_url, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    url = fresh_database_url("rolling_upgrade")
    bootstrap = own_broker.bootstrap_servers
    migrations = tmp_path / "next-migrations"
    migrations.mkdir()
    replicas = Replicas(bootstrap, url, tmp_path / "logs", migrations)
    feed = Feed(bootstrap)
    feeding: asyncio.Task[None] | None = None
    try:
        # today's release, two replicas in one group
        for name in ("old-a", "old-b"):
            replicas.start(name, new=False)
        for name in ("old-a", "old-b"):
            await asyncio.to_thread(replicas.wait_ready, name)
        feeding = asyncio.create_task(feed.run())
        await _until(lambda: _count_at_least(url, 40), "the old replicas to process events")

        # the producer upgrades first: old consumers now receive a field they do not know
        feed.upgraded = True
        carrying = lambda: {i for i, _, _, new in feed.sent if new}  # noqa: E731
        await _until(
            lambda: _overlap(url, carrying, 20), "the old replicas to process events carrying the new field"
        )
        by_old_only = (await _processed(url)) & carrying()

        # replace one replica at a time as a Deployment does (maxSurge 1, maxUnavailable 0): the new replica
        # starts (migrates: expand step) and is ready before the old one stops; then it overlaps with old-b
        replicas.start("new-a", new=True)
        await asyncio.to_thread(replicas.wait_ready, "new-a")
        assert replicas.stop("old-a") == 0, "old-a did not stop cleanly"
        overlap_start = await _processed(url)
        await _until(
            lambda: _both_process(url, overlap_start, carrying, 10),
            "old-b and new-a to both process events carrying the new field",
        )
        processed_in_overlap = (await _processed(url)) - overlap_start
        by_new_in_overlap = (await _stored_by_new(url)) & processed_in_overlap
        by_old_in_overlap = (processed_in_overlap & carrying()) - by_new_in_overlap

        # old-b -> new-b
        replicas.start("new-b", new=True)
        await asyncio.to_thread(replicas.wait_ready, "new-b")
        assert replicas.stop("old-b") == 0, "old-b did not stop cleanly"
        before = len(feed.sent)
        await _until(lambda: _count_at_least(url, before + 30), "the new replicas to process events")

        feed.stop.set()
        await feeding
        sent_ids = {i for i, *_ in feed.sent}
        await _until(lambda: _all_processed(url, sent_ids), "every event to be processed", timeout=30)
        await asyncio.sleep(1.0)  # let the relay publish what the last batches wrote

        # nothing lost, nothing extra: every event applied once (the inbox keys on ce_id)
        assert await _processed(url) == sent_ids
        # per-account order kept across the hand-overs: each account holds its last event's balance
        last = {aid: balance for _, aid, balance, _ in feed.sent}
        stored = dict(await _rows(url, "SELECT account_id, balance_minor FROM segmenter.accounts"))
        assert stored == last
        # the old release processed events with the unknown field (not dead-lettered) before and during
        # the overlap, the new one stored the field, each event at most once
        assert len(by_old_only) >= 20 and by_old_in_overlap and by_new_in_overlap
        by_new = await _rows(url, "SELECT ce_id, preferred_language FROM segmenter.account_languages")
        assert {lang for _, lang in by_new} == {"es-MX"}
        assert {i for i, _ in by_new} <= carrying() and not ({i for i, _ in by_new} & by_old_only)
        # nothing dead-lettered
        dlqs = list(topology.service("segmenter").dead_letter_topics)
        assert await _records(bootstrap, dlqs) == []
        # every event the segmenter wrote to its outbox was published once and only once
        outbox = await _rows(url, "SELECT topic, headers, published_at FROM segmenter.outbox")
        assert all(published for *_, published in outbox), "outbox rows left unpublished"
        wrote = sorted(_ce_id(h) for _, h, _ in outbox)
        out_topics = sorted({t for t, _, _ in outbox})
        on_topics = sorted(
            dict(r.headers)["ce_id"].decode()
            for r in await _records(bootstrap, out_topics)
            if dict(r.headers).get("ce_source") == b"segmenter"
        )
        assert on_topics == wrote
    except BaseException:
        replicas.dump()
        raise
    finally:
        feed.stop.set()
        if feeding is not None:
            await asyncio.gather(feeding, return_exceptions=True)
        replicas.stop_all()


def _ce_id(headers: Any) -> str:
    pairs = json.loads(headers) if isinstance(headers, str) else headers
    found = dict(pairs)["ce_id"] if isinstance(pairs, list) else pairs["ce_id"]
    return str(found)


async def _count_at_least(url: str, n: int) -> bool:
    return len(await _processed(url)) >= n


async def _overlap(url: str, carrying, n: int) -> bool:  # type: ignore[no-untyped-def]
    return len((await _processed(url)) & carrying()) >= n


async def _both_process(url: str, start: set[str], carrying, n: int) -> bool:  # type: ignore[no-untyped-def]
    fresh = ((await _processed(url)) - start) & carrying()
    by_new = (await _stored_by_new(url)) & fresh
    return len(by_new) >= n and len(fresh - by_new) >= n


async def _all_processed(url: str, ids: set[str]) -> bool:
    return ids <= await _processed(url)
