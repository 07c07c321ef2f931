"""Outbox: events to publish, written in the same transaction as the state change that caused them.

`OutboxRelay` (relay.py) publishes them afterwards; nothing is ever written to Kafka directly by a handler.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..cloudevents import OutgoingRecord, encode
from ..events import Event


async def write(conn: AsyncConnection, schema: str, records: Sequence[OutgoingRecord]) -> None:
    """Append records to the outbox (one statement for the whole batch)."""
    if not records:
        return
    await conn.execute(
        text(
            f"INSERT INTO {schema}.outbox (topic, key, value, headers) "
            "SELECT * FROM unnest(CAST(:t AS text[]), CAST(:k AS bytea[]), CAST(:v AS bytea[]), CAST(:h AS jsonb[]))"
        ),
        {
            "t": [r.topic for r in records],
            "k": [r.key for r in records],
            "v": [r.value for r in records],
            "h": [json.dumps([[k, v.decode()] for k, v in r.headers]) for r in records],
        },
    )


async def emit(
    conn: AsyncConnection,
    schema: str,
    events: Sequence[Event],
    *,
    source: str,
    ids: Sequence[str | None] | None = None,
    time: datetime | None = None,
) -> None:
    """Encode and append events. Use deterministic `ids` when the same decision may be taken twice."""
    ids = ids or [None] * len(events)
    await write(
        conn, schema, [encode(e, source=source, id=i, time=time) for e, i in zip(events, ids, strict=True)]
    )
