"""The unit of work handed to handlers: one DB connection inside a transaction plus an outbox buffer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..cloudevents import OutgoingRecord, encode
from ..events import Event, utcnow
from ..topology import check_write
from . import outbox


class Transaction:
    """`conn` is inside an open transaction; `emit` queues an event that is written to the outbox in that
    same transaction, so the event exists if and only if the state change committed."""

    def __init__(self, conn: AsyncConnection, schema: str, source: str) -> None:
        self.conn = conn
        self.schema = schema
        self.source = source
        self.records: list[OutgoingRecord] = []
        self.now = utcnow()  # one ce_time for every event of the transaction

    def emit(self, event: Event, *, id: str | None = None, time: datetime | None = None) -> None:
        self.records.append(encode(event, source=self.source, id=id, time=time or self.now))

    async def flush(self) -> None:
        for topic in {r.topic for r in self.records}:
            check_write(self.source, topic)  # only what the service's topology declares
        await outbox.write(self.conn, self.schema, self.records)
        self.records = []


@asynccontextmanager
async def transaction(engine: AsyncEngine, schema: str, source: str) -> AsyncIterator[Transaction]:
    """For code outside a consumer (API handlers, timers, pollers): state change + events, atomically."""
    async with engine.begin() as conn:
        tx = Transaction(conn, schema, source)
        yield tx
        await tx.flush()
