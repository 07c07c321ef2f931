"""The `vault.account_keys` table: one wrapped data key per subject (an account id), or its tombstone."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

TABLE = "vault.account_keys"


@dataclass(frozen=True, slots=True)
class StoredKey:
    subject: str
    kek_id: str | None
    wrapped: bytes | None
    erased_at: datetime | None
    # written by the reading transaction itself (not committed yet): never cached, it may still roll back
    own: bool = False

    @property
    def erased(self) -> bool:
        return self.erased_at is not None


async def fetch(conn: AsyncConnection, subjects: Collection[str]) -> dict[str, StoredKey]:
    if not subjects:
        return {}
    rows = await conn.execute(
        # a row this transaction wrote carries its start time (DEFAULT now(); now() in `tombstone`)
        text(
            f"""SELECT subject, kek_id, wrapped_key, erased_at,
                       (created_at = now() OR erased_at IS NOT NULL AND erased_at = now()) AS own
                  FROM {TABLE} WHERE subject = ANY(:s)"""
        ),
        {"s": list(subjects)},
    )
    return {
        r[0]: StoredKey(r[0], r[1], bytes(r[2]) if r[2] is not None else None, r[3], bool(r[4])) for r in rows
    }


async def insert_missing(
    conn: AsyncConnection, subjects: list[str], kek_id: str, wrapped: list[bytes]
) -> set[str]:
    """Store new keys; returns the subjects stored. One another transaction keyed (or erased) first keeps
    that row (re-read by the caller)."""
    rows = await conn.execute(
        text(
            f"""INSERT INTO {TABLE} (subject, kek_id, wrapped_key)
                SELECT s, :k, w FROM unnest(CAST(:s AS text[]), CAST(:w AS bytea[])) AS t(s, w)
                ON CONFLICT (subject) DO NOTHING
                RETURNING subject"""
        ),
        {"s": subjects, "k": kek_id, "w": wrapped},
    )
    return {r[0] for r in rows}


async def tombstone(conn: AsyncConnection, subject: str, by: str) -> bool:
    """Destroy the subject's key (keeping a tombstone so it is never re-keyed). False if already erased."""
    result = await conn.execute(
        text(
            f"""INSERT INTO {TABLE} AS k (subject, erased_at, erased_by) VALUES (:s, now(), :by)
                ON CONFLICT (subject) DO UPDATE
                   SET kek_id = NULL, wrapped_key = NULL, erased_at = now(), erased_by = :by
                 WHERE k.erased_at IS NULL
                RETURNING subject"""
        ),
        {"s": subject, "by": by},
    )
    return result.first() is not None


async def rewrap(conn: AsyncConnection, subject: str, kek_id: str, wrapped: bytes) -> None:
    await conn.execute(
        text(f"UPDATE {TABLE} SET kek_id = :k, wrapped_key = :w WHERE subject = :s AND erased_at IS NULL"),
        {"s": subject, "k": kek_id, "w": wrapped},
    )
