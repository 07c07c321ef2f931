"""Helpers for backbone tests: a throw-away service schema, topics, a collecting consumer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from arrears_shared.cloudevents import Envelope, OutgoingRecord, encode
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.db.runner_tables import runner_tables_ddl
from arrears_shared.settings import ServiceSettings
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import text

from .factories import account_changed


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def create_topics(bootstrap: str, names: Sequence[str], partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def create_schema(url: str, schema: str) -> None:
    """A service schema with the runner tables plus `applied`, where the test handler records its effects."""
    await asyncio.to_thread(upgrade, url, "vault")  # the data keys of the events' personal fields
    engine = make_engine(url)
    async with engine.begin() as c:
        await c.execute(text(f"CREATE SCHEMA {schema}"))
        for stmt in runner_tables_ddl(schema):
            await c.execute(text(stmt))
        await c.execute(
            text(f"CREATE TABLE {schema}.applied (ce_id text NOT NULL, account_id text NOT NULL)")
        )
    await engine.dispose()


async def open_record(url: str, headers: Any, value: bytes) -> Envelope:
    """Decode a record as a consumer does: its sealed personal fields opened with the vault's keys."""
    from vault_support import open_records  # tests/ is on sys.path under pytest, not in procs.py's processes

    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return (await open_records(conn, [(headers, value)]))[0]
    finally:
        await engine.dispose()


def settings(bootstrap: str, url: str, **kw: Any) -> ServiceSettings:
    base: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "database_url": url,
        "runner_retry_attempts": 3,
        "runner_retry_base_s": 0.01,
        "runner_retry_max_s": 0.05,
        "runner_poll_timeout_ms": 100,
        "outbox_poll_s": 0.02,
    }
    return ServiceSettings(**(base | kw))


def recording_handler(schema: str, out_topic: str | None, poison: str | None = None):  # type: ignore[no-untyped-def]
    """Records each applied event and forwards it to `out_topic` through the outbox."""

    async def handle(events: Sequence[Envelope], tx: Transaction) -> None:
        for env in events:
            if poison and env.data.account_id == poison:
                raise ValueError(f"cannot apply {env.data.account_id}")
        await tx.conn.execute(
            text(
                f"INSERT INTO {schema}.applied SELECT * FROM unnest(CAST(:i AS text[]), CAST(:a AS text[]))"
            ),
            {"i": [e.id for e in events], "a": [e.data.account_id for e in events]},
        )
        if out_topic:
            for env in events:
                rec = encode(env.data, source="test", id=f"out-{env.id}")
                tx.records.append(OutgoingRecord(out_topic, rec.key, rec.value, rec.headers))

    return handle


async def produce(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes | None, list]]
) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await p.start()
    try:
        for key, value, headers in records:
            await p.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await p.stop()


def valid_records(n: int, start: int = 0) -> list[tuple[bytes, bytes, list]]:
    out = []
    for i in range(start, start + n):
        rec = encode(account_changed(i), source="test", id=f"ev-{i}")
        out.append((rec.key, rec.value, rec.headers))
    return out


async def consume_all(bootstrap: str, topic: str, expect: int, timeout: float = 30.0) -> list[Any]:  # noqa: ASYNC109
    c = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await c.start()
    got: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(got) < expect and asyncio.get_running_loop().time() < deadline:
            batch = await c.getmany(timeout_ms=200)
            for recs in batch.values():
                got.extend(recs)
        # drain anything beyond the expectation (duplicates would show up here)
        batch = await c.getmany(timeout_ms=500)
        for recs in batch.values():
            got.extend(recs)
    finally:
        await c.stop()
    return got


async def scalar(url: str, sql: str) -> Any:
    engine = make_engine(url)
    async with engine.connect() as c:
        v = (await c.execute(text(sql))).scalar()
    await engine.dispose()
    return v


async def wait_until(pred, timeout: float = 30.0, interval: float = 0.05) -> None:  # type: ignore[no-untyped-def]  # noqa: ASYNC109
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await pred():
            return
        await asyncio.sleep(interval)
    raise AssertionError("condition not met in time")
