"""OutboxRelay: publishes committed outbox rows to Kafka and marks them published.

- One active relay per service schema (session advisory lock), so replicas never reorder one key's events.
- Rows are sent in id order with acks=all; aiokafka keeps one in-flight batch per partition, so the order
  of a key (= partition) is preserved.
- Rows are marked published only after every send in the batch was acknowledged; a crash in between
  republishes them (consumers drop the duplicates by ce_id). A kill -9 therefore never loses a committed
  event and never publishes an uncommitted one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .. import telemetry as m
from ..settings import ServiceSettings
from . import inbox
from .dead_letter import is_infrastructure_error

log = logging.getLogger(__name__)


def make_producer(settings: ServiceSettings, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        client_id=client_id,
        acks="all",
        linger_ms=5,
        max_batch_size=1024 * 1024,
        max_request_size=4 * 1024 * 1024,
        request_timeout_ms=30_000,
        **settings.kafka_client_kwargs(),
    )


async def publish_rows(producer: AIOKafkaProducer, rows: Sequence[Sequence[Any]]) -> None:
    """Publish `(id, topic, key, value, headers_json)` rows in order and wait for every ack.

    Rows are packed into one record batch per (topic, partition) with the producer's own partitioner (the
    partition `producer.send` would pick), then handed over with `send_batch`: far cheaper per record than
    one `send` each. aiokafka keeps one in-flight batch per partition, so a key's order is preserved.
    """
    partitioner = producer._partitioner  # the configured partitioner, so keys land where send() puts them
    partitions: dict[str, list[int]] = {}
    open_batches: dict[tuple[str, int], BatchBuilder] = {}
    futures: list[asyncio.Future[Any]] = []

    async def flush(tp: tuple[str, int]) -> None:
        batch = open_batches.pop(tp)
        futures.append(await producer.send_batch(batch, tp[0], partition=tp[1]))

    for row in rows:
        topic, key, value, headers = row[1], row[2], row[3], row[4]
        if topic not in partitions:
            partitions[topic] = sorted(await producer.partitions_for(topic))
        all_partitions = partitions[topic]
        partition = partitioner(key, all_partitions, all_partitions)
        hs = [(k, v.encode()) for k, v in json.loads(headers)]
        tp = (topic, partition)
        batch = open_batches.get(tp)
        if batch is None:
            batch = open_batches[tp] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None, headers=hs) is None:
            await flush(tp)  # full: send it and start the next one
            batch = open_batches[tp] = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=hs) is None:
                raise ValueError(f"outbox row {row[0]} is larger than the producer's max batch size")
    for tp in list(open_batches):
        await flush(tp)
    await asyncio.gather(*futures)


class OutboxRelay:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        schema: str,
        producer: AIOKafkaProducer,
        settings: ServiceSettings,
        service: str,
    ) -> None:
        self.engine = engine
        self.schema = schema
        self.producer = producer
        self.settings = settings
        self.service = service
        self.leader = False
        self.published = 0
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._last_housekeeping = 0.0
        # unix time of the oldest unpublished row while this relay leads (None: nothing waits, or not leading)
        self._oldest_unpublished: float | None = None
        m.OUTBOX_OLDEST_AGE.labels(service).set_function(self.oldest_age)

    def oldest_age(self) -> float:
        """Seconds the oldest unpublished row has waited; computed when scraped, so it keeps growing while
        publishing fails (broker down, credentials, a missing topic)."""
        since = self._oldest_unpublished
        return 0.0 if since is None else max(0.0, time.time() - since)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def wake(self) -> None:
        """Hint that rows were just committed (saves waiting for the next poll)."""
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                async with self.engine.connect() as conn:
                    conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    got = await conn.scalar(
                        text("SELECT pg_try_advisory_lock(hashtext(:k))"),
                        {"k": f"arrears-relay-{self.schema}"},
                    )
                    if not got:
                        self.leader = False
                        # another replica leads and reports the backlog; keep no stale value here
                        self._oldest_unpublished = None
                        m.OUTBOX_BACKLOG.labels(self.service).set(0)
                        await self._sleep(1.0)
                        continue
                    self.leader = True
                    try:
                        await self._lead(conn)
                    finally:
                        self.leader = False
                        if not conn.invalidated:
                            await conn.execute(
                                text("SELECT pg_advisory_unlock(hashtext(:k))"),
                                {"k": f"arrears-relay-{self.schema}"},
                            )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # leadership ended with the connection: the next leader measures the outbox; a value kept here
                # would grow on and page for a backlog another replica is publishing (max by service)
                self._oldest_unpublished = None
                m.OUTBOX_BACKLOG.labels(self.service).set(0)
                level = logging.WARNING if is_infrastructure_error(e) else logging.ERROR
                log.log(
                    level,
                    "outbox relay error, retrying",
                    exc_info=level == logging.ERROR,
                    extra={"error": f"{type(e).__name__}: {e}"[:300]},
                )
                await self._sleep(1.0)

    async def _lead(self, conn: AsyncConnection) -> None:
        while not self._stopping.is_set():
            # before draining: while publishing fails, the backlog and its age are still measured
            await self._housekeeping(conn)
            n = await self.drain_once(conn)
            if n < self.settings.outbox_batch:
                await self._sleep(self.settings.outbox_poll_s)

    async def drain_once(self, conn: AsyncConnection) -> int:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        rows = await raw.fetch(
            f"SELECT id, topic, key, value, headers::text FROM {self.schema}.outbox "
            "WHERE published_at IS NULL ORDER BY id LIMIT $1",
            self.settings.outbox_batch,
        )
        if not rows:
            self._oldest_unpublished = None  # drained: nothing waits
            return 0
        await publish_rows(self.producer, rows)
        await raw.execute(
            f"UPDATE {self.schema}.outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
            [r[0] for r in rows],
        )
        self.published += len(rows)
        for topic, n in Counter(r[1] for r in rows).items():
            m.EVENTS_PRODUCED.labels(self.service, topic).inc(n)
        return len(rows)

    async def _housekeeping(self, conn: AsyncConnection) -> None:
        now = time.monotonic()
        if now - self._last_housekeeping < 5.0:
            return
        self._last_housekeeping = now
        backlog = await conn.scalar(
            text(f"SELECT count(*) FROM {self.schema}.outbox WHERE published_at IS NULL")
        )
        m.OUTBOX_BACKLOG.labels(self.service).set(backlog or 0)
        oldest = await conn.scalar(
            text(
                f"SELECT extract(epoch FROM created_at) FROM {self.schema}.outbox "
                "WHERE published_at IS NULL ORDER BY id LIMIT 1"
            )
        )
        self._oldest_unpublished = float(oldest) if oldest is not None else None
        await conn.execute(
            text(f"DELETE FROM {self.schema}.outbox WHERE published_at < now() - make_interval(secs => :s)"),
            {"s": self.settings.outbox_retention_s},
        )
        await inbox.purge(conn, self.schema, self.settings.inbox_retention_s)

    async def _sleep(self, s: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=s)
        except TimeoutError:
            pass
        self._wake.clear()
