"""Subject access and erasure across every schema: what the platform holds on one account, opened.

`report` reads each table that has an `account_id` column in every Arrears schema (needs a role that can read
them all: the migrator's), opens every sealed value with the account's key and returns one JSON-ready
document. `erase` destroys the account's key (a tombstone stays so it is never re-keyed): every sealed value
of the account, in any table, outbox, topic or dead-letter topic, is unreadable from then on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from . import cipher, store
from .keys import vault
from .records import needs_opening

_SKIP_SCHEMAS = ("pg_catalog", "information_schema", "vault")


def open_everything(value: Any, aead: AESGCM | None, subject: str) -> Any:
    """`value` (a column value or JSON document) with every sealed string opened (or `[erased]`)."""
    if isinstance(value, str):
        return cipher.open_value(aead, subject, value)
    if isinstance(value, dict):
        return {k: open_everything(v, aead, subject) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [open_everything(v, aead, subject) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return None  # binary columns (outbox values, wrapped keys) are not part of the report
    return value


async def opened_for_display(
    conn: AsyncConnection, headers: Sequence[tuple[str, bytes]] | None, value: bytes | None
) -> bytes | None:
    """A stored record's value (a dead letter, an outbox row) with its sealed personal data opened with the
    account's key (`[erased]` once the key is destroyed), for people who may see personal data. Unchanged
    when nothing in it is sealed, it is not JSON, or the vault has no key for its subject."""
    subject = needs_opening(headers, value)
    if subject is None or value is None:
        return value
    keys = await vault().for_reading(conn, [subject])
    if subject not in keys:
        return value
    try:
        data = json.loads(value)
    except ValueError:
        return value
    return json.dumps(open_everything(data, keys[subject], subject), ensure_ascii=False).encode()


async def tables_with_accounts(conn: AsyncConnection) -> list[tuple[str, str]]:
    rows = await conn.execute(
        text(
            """SELECT c.table_schema, c.table_name FROM information_schema.columns c
                 JOIN information_schema.tables t USING (table_schema, table_name)
                WHERE c.column_name = 'account_id' AND t.table_type = 'BASE TABLE'
                  AND c.table_schema <> ALL(:skip)
                ORDER BY 1, 2"""
        ),
        {"skip": list(_SKIP_SCHEMAS)},
    )
    return [(r[0], r[1]) for r in rows]


async def report(conn: AsyncConnection, account_id: str) -> dict[str, Any]:
    stored = (await store.fetch(conn, [account_id])).get(account_id)
    keys = await vault().for_reading(conn, [account_id])
    aead = keys.get(account_id)
    data: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for schema, table in await tables_with_accounts(conn):
        rows = await conn.execute(
            text(f'SELECT * FROM "{schema}"."{table}" WHERE account_id = :a'), {"a": account_id}
        )
        found = [{k: open_everything(v, aead, account_id) for k, v in r._mapping.items()} for r in rows]
        if found:
            data.setdefault(schema, {})[table] = found
    return {
        "account_id": account_id,
        "generated_at": datetime.now(UTC).isoformat(),
        "key": ("none" if stored is None else "erased" if stored.erased else "live"),
        "erased_at": stored.erased_at.isoformat() if stored and stored.erased_at else None,
        "data": data,
    }


async def erase(conn: AsyncConnection, account_id: str, by: str) -> bool:
    """Destroy the account's key and its blind indexes (every `*_bidx` column of a table with an `account_id`,
    so an erased person is not found by a search for their name or number); False if already erased."""
    erased = await vault().erase(conn, account_id, by)
    rows = await conn.execute(
        text(
            """SELECT c.table_schema, c.table_name, c.column_name, c.data_type
                 FROM information_schema.columns c
                WHERE c.column_name LIKE '%\\_bidx' AND c.table_schema <> ALL(:skip)
                  AND EXISTS (SELECT 1 FROM information_schema.columns a
                               WHERE a.table_schema = c.table_schema AND a.table_name = c.table_name
                                 AND a.column_name = 'account_id')"""
        ),
        {"skip": list(_SKIP_SCHEMAS)},
    )
    for schema, table, column, data_type in rows.all():
        empty = "'{}'" if data_type == "ARRAY" else "NULL"
        await conn.execute(
            text(f'UPDATE "{schema}"."{table}" SET "{column}" = {empty} WHERE account_id = :a'),
            {"a": account_id},
        )
    return erased


async def rewrap(conn: AsyncConnection, batch: int = 1000) -> int:
    """Re-wrap every data key not wrapped by the current master key (after a master-key rotation)."""
    v = vault()
    current = v.wrapper.current_id
    done = 0
    while True:
        rows = (
            await conn.execute(
                text(
                    f"""SELECT subject, kek_id, wrapped_key FROM {store.TABLE}
                         WHERE erased_at IS NULL AND kek_id <> :k ORDER BY subject LIMIT :n FOR UPDATE"""
                ),
                {"k": current, "n": batch},
            )
        ).all()
        if not rows:
            return done
        for subject, kek_id, wrapped in rows:
            key = v.wrapper.unwrap(kek_id, bytes(wrapped), subject.encode())
            await store.rewrap(conn, subject, current, v.wrapper.wrap(key, subject.encode()))
            done += 1
