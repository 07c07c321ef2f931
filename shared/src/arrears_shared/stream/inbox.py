"""Inbox: the ids of events a service has already applied, written in the same transaction as the effects."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def claim(conn: AsyncConnection, schema: str, ids: Sequence[str], topics: Sequence[str]) -> set[str]:
    """Insert `ids` into the inbox and return those that were not there before (the ones to apply).

    Must run inside the transaction that applies the events: if it rolls back, the claim rolls back too.
    """
    if not ids:
        return set()
    rows = await conn.execute(
        text(
            f"INSERT INTO {schema}.inbox (ce_id, topic) "
            "SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:topics AS text[])) "
            "ON CONFLICT (ce_id) DO NOTHING RETURNING ce_id"
        ),
        {"ids": list(ids), "topics": list(topics)},
    )
    return {r[0] for r in rows}


async def purge(conn: AsyncConnection, schema: str, older_than_s: float) -> int:
    """Forget ids older than the replay horizon (must exceed the longest DLQ replay window)."""
    res = await conn.execute(
        text(f"DELETE FROM {schema}.inbox WHERE consumed_at < now() - make_interval(secs => :s)"),
        {"s": older_than_s},
    )
    return res.rowcount or 0
