"""Outbox: events to publish, written in the same transaction as the state change that caused them.

`OutboxRelay` (relay.py) publishes them afterwards; nothing is ever written to Kafka directly by a handler.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..cloudevents import OutgoingRecord
from ..vault.records import seal_records


async def write(conn: AsyncConnection, schema: str, records: Sequence[OutgoingRecord]) -> None:
    """Append records to the outbox with one binary COPY on the transaction's own connection, personal fields
    sealed with their account's data key (vault/records.py)."""
    if not records:
        return
    records = await seal_records(conn, records)
    raw = (await conn.get_raw_connection()).driver_connection
    assert raw is not None
    if not raw.is_in_transaction():
        # SQLAlchemy begins the driver transaction lazily, on the first statement: make sure it has begun,
        # so the COPY is part of the caller's transaction.
        await conn.execute(text("SELECT 1"))
    await raw.copy_records_to_table(
        "outbox",
        schema_name=schema,
        columns=("topic", "key", "value", "headers"),
        records=[(r.topic, r.key, r.value, _headers_json(r.headers)) for r in records],
    )


_json_str = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]  # the C string encoder


def _headers_json(headers: Sequence[tuple[str, bytes]]) -> str:
    """`json.dumps([[k, v.decode()] ...])`, at a third of the cost (one per event on the hot path)."""
    return "[" + ",".join(f"[{_json_str(k)},{_json_str(v.decode())}]" for k, v in headers) + "]"
