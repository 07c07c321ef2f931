"""Webhook de-duplication tables stay bounded: the responses service prunes `webhook_events` on a schedule,
forgetting ids older than the retention window (longer than any provider's retry window) and keeping the
younger ones, which still refuse a redelivery; ingest's `webhook_deliveries` is pruned the same way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from arrears_responses.__main__ import definition
from arrears_responses.settings import ResponsesSettings
from arrears_responses.webhooks.service import claim_event
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.service import ServiceHost
from arrears_shared.webhook_dedupe import LONGEST_PROVIDER_RETRY, DedupeTable, prune
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

RETENTION_DAYS = 10


async def age_rows(engine: AsyncEngine, table: str, rows: list[tuple[str, float]]) -> None:
    """Remembered ids that arrived `days` ago."""
    async with engine.begin() as conn:
        for rid, days in rows:
            if table == "responses.webhook_events":
                sql = f"INSERT INTO {table} (id, provider, type, received_at) VALUES (:i, 'quo', 't', now() - make_interval(secs => :s))"
            else:
                sql = f"INSERT INTO {table} (provider, delivery_id, outcome, received_at) VALUES ('stripe', :i, 'applied', now() - make_interval(secs => :s))"
            await conn.execute(text(sql), {"i": rid, "s": days * 86400})


async def ids(engine: AsyncEngine, sql: str) -> set[str]:
    async with engine.connect() as conn:
        return {r[0] for r in await conn.execute(text(sql))}


async def wait_for(check: Callable[[], Any], within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_responses_prunes_webhook_ids_on_a_schedule_and_stays_bounded(
    broker: Any, fresh_database_url: Callable[..., str]
) -> None:
    settings = ResponsesSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=fresh_database_url("dedupe"),
        webhook_dedupe_retention_s=RETENTION_DAYS * 86400,
        webhook_dedupe_prune_every_s=0.2,
        runner_poll_timeout_ms=100,
    )
    d = definition(settings)
    d.consumers = []  # its loops, not its consumer: the group stays with the other tests' services
    host = ServiceHost(d)
    await host.start()
    engine = host.ctx.engine
    table = "responses.webhook_events"
    try:
        young = [(f"young-{d}", d) for d in (0, 1, 3, 7, 9)]
        for round_ in range(3):  # ids keep arriving; each round adds as many old ones as young ones
            old = [(f"old-{round_}-{d}", d) for d in (11, 15, 30, 90, 365)]
            await age_rows(engine, table, old + ([] if round_ else young))

            async def only_young() -> bool:
                return await ids(engine, f"SELECT id FROM {table}") == {i for i, _ in young}

            await wait_for(only_young)  # the service's own loop pruned them, nobody called prune here
        async with engine.begin() as conn:  # an id inside the window still refuses a redelivery
            assert not await claim_event(conn, "responses", "young-9", "message.received")
    finally:
        await host.stop()


async def test_ingest_payment_deliveries_are_pruned_in_batches(
    fresh_database_url: Callable[..., str],
) -> None:
    url = fresh_database_url("dedupe_ingest")
    await asyncio.to_thread(upgrade, url, "ingest")
    engine = make_engine(url)
    table = "ingest.webhook_deliveries"
    try:
        await age_rows(engine, table, [(f"old-{i}", 11 + i % 50) for i in range(120)])
        await age_rows(engine, table, [("retry-window", 6.5)])
        deleted = await prune(
            engine,
            "ingest",
            DedupeTable("webhook_deliveries"),
            older_than=timedelta(days=RETENTION_DAYS),
            batch=25,
        )
        assert deleted == 120
        assert await ids(engine, f"SELECT delivery_id FROM {table}") == {"retry-window"}
    finally:
        await engine.dispose()


def test_retention_cannot_be_set_inside_a_provider_retry_window() -> None:
    with pytest.raises(ValidationError):
        ResponsesSettings(webhook_dedupe_retention_s=LONGEST_PROVIDER_RETRY.total_seconds())
