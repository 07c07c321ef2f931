"""`arrears vault seal-existing`: seal the personal data of rows written before sealing was on.

Every service opens plaintext as it is, so such rows keep working; but erasure (destroying the account's key)
cannot reach them. This backfill seals them with their account's key (`Vault.for_writing`: an erased
account gets a throw-away key, so its legacy plaintext becomes unreadable) and fills their blind indexes
exactly as the service computes them for new rows (none for an erased account). One transaction per batch:
it can be stopped and run again, and a second run seals nothing.

`sealed_columns()` is the one list of what each service seals in its own tables. Only rows with an `account_id` are
sealed (an unmatched reply has no account, so no key). Audit logs are left as they are: append-only and
hash-chained, they cannot be rewritten. A table or column that does not exist (a deployment without that
service, or an older revision) is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import topics, topology
from ..channels import kind_of
from ..db.engine import schema_for
from ..delivery.sealing import READABLE, seal_rendered
from ..events import NoticeDue
from . import cipher, fields
from .keys import vault

# (the row, its plaintext) -> the blind index the service writes for it (a list for a text[] column)
Index = Callable[[dict[str, Any], str], str | list[str] | None]


@dataclass(frozen=True)
class Bidx:
    column: str
    compute: Index
    array: bool = False  # text[] (erased: '{}') or text (erased: NULL)
    unique: tuple[str, ...] = ()  # with the index, a unique key: a legacy duplicate is dropped
    unique_where: str = ""  # the unique index is partial: its condition, the table's alias written `{t}`
    newest: str = ""  # on a duplicate, the row with the greater value of this column is kept


@dataclass(frozen=True)
class Sealed:
    schema: str
    table: str
    column: str
    kind: Literal["text", "json", "rendered"]
    paths: tuple[str, ...] = ()  # kind "json": `Event.personal` syntax
    key: str = ""  # kinds "json"/"rendered": the primary key column, to page by
    bidx: Bidx | None = None
    needs: tuple[str, ...] = ()  # further columns the blind index is computed from

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}.{self.column}"


def _responses_address(row: dict[str, Any], value: str) -> str | None:
    # arrears_responses.contacts.lookup.address_index
    return vault().exact_index(kind_of(row["channel"]) or "address", value)


def _delivery_address(row: dict[str, Any], value: str) -> str | None:
    # arrears_shared.delivery.sealing.address_index
    return vault().exact_index(row["channel"], value)


def _dispatcher(schema: str) -> list[Sealed]:
    return [
        Sealed(schema, "deliveries", "to_address", "text"),
        Sealed(schema, "deliveries", "payload", "json", NoticeDue.personal, key="notice_id"),
        Sealed(schema, "deliveries", "rendered", "rendered", key="notice_id"),
        Sealed(
            schema,
            "invalid_channels",
            "address",
            "text",
            bidx=Bidx("address_bidx", _delivery_address, unique=("account_id", "channel")),
            needs=("channel",),
        ),
    ]


_SERVICES: tuple[Sealed, ...] = (
    # console: readmodels/handlers.py `_upsert_accounts`
    Sealed(
        "console",
        "accounts",
        "customer_name",
        "text",
        bidx=Bidx("name_bidx", lambda _r, v: vault().name_index(v), array=True),
    ),
    Sealed(
        "console",
        "accounts",
        "phone",
        "text",
        bidx=Bidx("phone_bidx", lambda _r, v: vault().phone_index(v), True),
    ),
    Sealed(
        "console",
        "accounts",
        "email",
        "text",
        bidx=Bidx("email_bidx", lambda _r, v: vault().email_index(v), True),
    ),
    # segmenter: accounts/store.py `save`, `insert_decisions`
    Sealed("segmenter", "accounts", "customer_name", "text"),
    Sealed("segmenter", "accounts", "pause_reason", "text"),
    Sealed("segmenter", "accounts", "send_now", "json", ("reason",), key="account_id"),
    Sealed("segmenter", "account_channels", "address", "text"),
    Sealed("segmenter", "decisions", "reason", "text"),
    # dispatchers: arrears_shared.delivery (intake.py, claim.py, settle.py)
    # responses: contacts/handlers.py, autoreplies/service.py, inbound/replies.py, gmail/service.py,
    # corrections/service.py
    Sealed(
        "responses",
        "contacts",
        "address",
        "text",
        bidx=Bidx("address_bidx", _responses_address, unique=("channel",), newest="sent_at"),
        needs=("channel",),
    ),
    Sealed(
        "responses",
        "auto_replies",
        "address",
        "text",
        bidx=Bidx(
            "address_bidx",
            _responses_address,
            unique=("channel",),
            unique_where="{t}.purpose = 'opt_out_confirmation'",
        ),
        needs=("channel",),
    ),
    Sealed("responses", "email_sent", "address", "text"),
    Sealed("responses", "sent_messages", "address", "text"),
    Sealed("responses", "replies", "from_address", "text"),
    Sealed("responses", "replies", "text", "text"),
    Sealed("responses", "intent_corrections", "text", "text"),
    # escalation: timeline/service.py `record_activity`, overrides/service.py `add_note`, cases, tasks
    Sealed("escalation", "activity", "data", "json", ("text",), key="id"),
    Sealed("escalation", "notes", "body", "text"),
    Sealed("escalation", "cases", "close_note", "text"),
    Sealed("escalation", "tasks", "outcome", "text"),
    # ingest: snapshot/service.py `PERSONAL`
    Sealed(
        "ingest",
        "snapshot",
        "data",
        "json",
        ("customer_name", "phone", "email", "notes", "contacts.*.address"),
        key="account_id",
    ),
)


def sealed_columns() -> tuple[Sealed, ...]:
    """What every declared service seals: the list above plus the delivery tables of each dispatcher (a
    service that turns notice-due into message-sent runs the shared delivery engine, arrears_shared.delivery)."""
    dispatchers = [
        schema_for(t.name)
        for t in topology.declared().values()
        if topics.NOTICE_DUE in t.consumes and topics.MESSAGE_SENT in t.produces
    ]
    return (*_SERVICES, *(c for schema in dispatchers for c in _dispatcher(schema)))


async def seal_existing(conn: AsyncConnection, batch: int = 1000) -> dict[str, int]:
    """Seal every legacy plaintext value of `sealed_columns()`; rows sealed per "schema.table.column". `conn` must not
    be in a transaction block: each batch is committed on it."""
    present = await _columns(conn)
    await conn.commit()
    out: dict[str, int] = {}
    for s in sealed_columns():
        wanted = {s.column, "account_id", *s.needs, *((s.key,) if s.key else ())}
        if s.bidx is not None:
            wanted.add(s.bidx.column)
        if not wanted <= present.get((s.schema, s.table), set()):
            continue
        n = 0
        if s.kind == "text":
            while True:
                seen, done = await _text_batch(conn, s, batch)
                n += done
                await conn.commit()
                if not seen:
                    break
        else:
            after: Any = None
            while True:
                done, after = await _json_batch(conn, s, batch, after)
                n += done
                await conn.commit()
                if after is None:
                    break
        out[s.name] = n
    return out


async def _columns(conn: AsyncConnection) -> dict[tuple[str, str], set[str]]:
    rows = await conn.execute(
        text(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = ANY(CAST(:s AS text[]))"
        ),
        {"s": sorted({s.schema for s in sealed_columns()})},
    )
    found: dict[tuple[str, str], set[str]] = {}
    for sch, tab, col in rows:
        found.setdefault((sch, tab), set()).add(col)
    return found


async def _keys(conn: AsyncConnection, ids: list[str]) -> tuple[dict[str, AESGCM], set[str]]:
    """Keys to seal with (created where missing; a throw-away key for an erased account) and the erased."""
    readable = await vault().for_reading(conn, ids)
    keys = await vault().for_writing(conn, ids)
    return keys, {a for a in ids if a in readable and readable[a] is None}


async def _text_batch(conn: AsyncConnection, s: Sealed, batch: int) -> tuple[int, int]:
    """One batch of rows still in clear (each is sealed, or dropped as a duplicate): (rows seen, sealed)."""
    t, c = f"{s.schema}.{s.table}", s.column
    extra = "".join(f", {x}" for x in s.needs)
    rows = (
        await conn.execute(
            text(
                f"SELECT ctid::text AS ct, account_id, {c} AS v{extra} FROM {t}"
                f" WHERE account_id IS NOT NULL AND {c} IS NOT NULL AND {c} <> ''"
                f" AND {c} NOT LIKE '{cipher.PREFIX}%' LIMIT :n"
            ),
            {"n": batch},
        )
    ).all()
    if not rows:
        return 0, 0
    keys, erased = await _keys(conn, list({r.account_id for r in rows}))
    b, sealed = s.bidx, 0
    for r in rows:
        row = dict(r._mapping)
        a = row["account_id"]
        params: dict[str, Any] = {"ct": row["ct"], "v": cipher.seal_value(keys[a], a, row["v"])}
        sets = f"{c} = :v"
        if b is not None:
            idx: Any = None if a in erased else b.compute(row, row["v"])
            if b.array:
                idx = idx or []
                sets += f", {b.column} = CAST(:b AS text[])"
            else:
                sets += f", {b.column} = :b"
            params["b"] = idx
            if idx is not None and b.unique and not await _make_room(conn, s, b, row, idx):
                continue  # a duplicate of a newer row: dropped
        updated = await conn.execute(
            text(f"UPDATE {t} SET {sets} WHERE ctid = CAST(CAST(:ct AS text) AS tid)"), params
        )
        sealed += updated.rowcount
    return len(rows), sealed


async def _make_room(conn: AsyncConnection, s: Sealed, b: Bidx, row: dict[str, Any], idx: Any) -> bool:
    """Before a legacy row gets blind index `idx` of a unique key: if another row already has it, the older of
    the two goes (the legacy row when there is no `newest` column). True if the legacy row is to be kept."""
    t = f"{s.schema}.{s.table}"
    where = " AND ".join([f"o.{b.column} = :b", *(f"o.{k} = me.{k}" for k in b.unique)])
    if b.unique_where:
        where += f" AND {b.unique_where.format(t='o')} AND {b.unique_where.format(t='me')}"
    newer = f"o.{b.newest} >= me.{b.newest}" if b.newest else "TRUE"
    other = (
        await conn.execute(
            text(
                f"SELECT o.ctid::text AS ct, {newer} AS keep_other FROM {t} o, {t} me"
                f" WHERE me.ctid = CAST(CAST(:ct AS text) AS tid) AND o.ctid <> me.ctid AND {where} LIMIT 1"
            ),
            {"ct": row["ct"], "b": idx},
        )
    ).first()
    if other is None:
        return True
    gone = row["ct"] if other.keep_other else other.ct
    await conn.execute(text(f"DELETE FROM {t} WHERE ctid = CAST(CAST(:ct AS text) AS tid)"), {"ct": gone})
    return not other.keep_other


async def _json_batch(conn: AsyncConnection, s: Sealed, batch: int, after: Any) -> tuple[int, Any]:
    """One page (by primary key) of rows; those with a personal string still in clear are sealed. Returns
    the rows sealed and the last key seen (None at the end)."""
    t, c, k = f"{s.schema}.{s.table}", s.column, s.key
    rows = (
        await conn.execute(
            text(
                f"SELECT {k} AS k, account_id, {c} AS v FROM {t}"
                f" WHERE account_id IS NOT NULL AND {c} IS NOT NULL"
                f"{f' AND {k} > :after' if after is not None else ''} ORDER BY {k} LIMIT :n"
            ),
            {"n": batch, "after": after} if after is not None else {"n": batch},
        )
    ).all()
    if not rows:
        return 0, None
    docs = [(r.k, r.account_id, json.loads(r.v) if isinstance(r.v, str) else r.v) for r in rows]
    todo = [d for d in docs if _unsealed(s, d[2])]
    if todo:
        keys, _ = await _keys(conn, list({a for _, a, _ in todo}))
        await conn.execute(
            text(f"UPDATE {t} SET {c} = CAST(:v AS jsonb) WHERE {k} = :k"),
            [{"k": pk, "v": json.dumps(_seal_doc(s, keys[a], a, doc))} for pk, a, doc in todo],
        )
    return len(todo), (rows[-1].k if len(rows) == batch else None)


def _unsealed(s: Sealed, doc: Any) -> bool:
    if s.kind == "rendered":
        return _rendered_unsealed(doc, None)
    found: list[str] = []

    def note(v: str) -> str:
        found.append(v)
        return v

    fields.apply(doc, s.paths, note)
    return any(not cipher.is_sealed(v) for v in found)


def _rendered_unsealed(node: Any, key: str | None) -> bool:
    """Whether `seal_rendered` would seal anything in this rendered message."""
    if isinstance(node, dict):
        return any(_rendered_unsealed(v, k) for k, v in node.items())
    if isinstance(node, list):
        return any(_rendered_unsealed(v, key) for v in node)
    return isinstance(node, str) and bool(node) and key not in READABLE and not cipher.is_sealed(node)


def _seal_doc(s: Sealed, aead: AESGCM, subject: str, doc: Any) -> Any:
    if s.kind == "rendered":
        return seal_rendered(aead, subject, doc)
    return cipher.seal_fields(aead, subject, doc, s.paths)
