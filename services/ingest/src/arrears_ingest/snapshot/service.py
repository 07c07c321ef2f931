"""Change detection against the stored snapshot, and the bulk writes + events of one run.

`plan()` is pure (one chunk's validation result + the snapshot entries of its accounts -> what changed);
the writes are a handful of set-based statements per chunk (`unnest` arrays), so a 100k-row sheet costs a
few round trips per chunk, not 100k. Rules:
- new account id -> `created`; different content hash -> `updated`; same content but different raw cells
  (e.g. Notes edited, "$1,000" reformatted to "1000") -> snapshot refreshed, no event;
- an account whose row is now rejected keeps its last good snapshot (no `removed`: a typo in Balance must
  not stop or restart the debtor's dunning); only ids absent from the sheet are `removed`;
- rows that merely moved get their row number updated, no event;
- removal policy per run: a sheet run removes absent accounts that the sheet created (`origin = 'sheet'`;
  accounts created by an upload survive until the sheet lists them, then the sheet adopts them); an upload
  in `replace` mode stands in for the whole master sheet and removes every absent account; an upload in
  `merge` mode removes nothing (`absent()` lists the accounts a run removes, once it has seen every row).

Writers of the snapshot are serialised by one PostgreSQL advisory lock: a run holds it at session level for
its whole duration (`hold_snapshot`), across the commits of its chunks; a payment takes it for its own
transaction (`lock_snapshot`). So a run never sees another writer's change half-way.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import pydantic_core
from arrears_shared.cloudevents import OutgoingRecord, record
from arrears_shared.events import AccountChanged, AccountStatus, IngestRejected
from arrears_shared.vault import cipher, fields
from arrears_shared.vault.keys import Keys, vault
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..validation import AccountRow, Rejection, SheetResult
from ..validation.columns import extra_channel_specs
from ..validation.rows import implied_contact

Source = Literal["sheet", "upload"]
Removal = Literal["sheet", "all", "none"]
SNAPSHOT_LOCK = "arrears-ingest-snapshot"


@dataclass(frozen=True, slots=True)
class SnapEntry:
    content_hash: str
    raw_hash: str
    row_number: int
    origin: str = "sheet"


@dataclass(slots=True)
class Plan:
    created: list[AccountRow] = field(default_factory=list)
    updated: list[AccountRow] = field(default_factory=list)
    refreshed: list[AccountRow] = field(default_factory=list)
    moved: list[tuple[str, int]] = field(default_factory=list)
    unchanged: int = 0


async def lock_snapshot(conn: AsyncConnection) -> None:
    """Serialise writers of the snapshot (runs of any source, payments) until the transaction ends."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": SNAPSHOT_LOCK})


@contextlib.asynccontextmanager
async def hold_snapshot(engine: AsyncEngine) -> AsyncIterator[None]:
    """The snapshot lock at session level, on a dedicated connection, for the duration of the block: a
    run commits chunk by chunk and stays the only writer until it has finished (payments and other runs
    wait, as they waited for the single transaction runs used to be)."""
    async with engine.connect() as conn:
        try:
            await conn.execute(text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": SNAPSHOT_LOCK})
            await conn.commit()
        except BaseException:
            await conn.invalidate()  # cancelled while waiting: the lock may have been granted meanwhile
            raise
        try:
            yield
        finally:
            try:
                await conn.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": SNAPSHOT_LOCK})
                await conn.commit()
            except BaseException:
                # never hand a connection that may still hold the lock back to the pool
                await conn.invalidate()
                raise


async def load_entries(
    conn: AsyncConnection, schema: str, account_ids: Sequence[str]
) -> dict[str, SnapEntry]:
    """The snapshot entries of these accounts (those it holds)."""
    if not account_ids:
        return {}
    result = await conn.execute(
        text(
            f"SELECT account_id, content_hash, raw_hash, row_number, origin FROM {schema}.snapshot "
            "WHERE account_id = ANY(CAST(:a AS text[]))"
        ),
        {"a": list(account_ids)},
    )
    return {a: SnapEntry(c, r, n, o) for a, c, r, n, o in result.tuples()}


async def absent(conn: AsyncConnection, schema: str, present: Collection[str], removal: Removal) -> list[str]:
    """The accounts a run of this removal policy removes: held by the snapshot, absent from the source
    (`present` = every account id the run saw, accepted, unchanged or rejected)."""
    if removal == "none":
        return []
    where = " WHERE origin = 'sheet'" if removal == "sheet" else ""
    result = await conn.execute(text(f"SELECT account_id FROM {schema}.snapshot{where}"))
    return [a for (a,) in result.tuples() if a not in present]


def plan(result: SheetResult, snap: Mapping[str, SnapEntry]) -> Plan:
    """What one chunk changes: `snap` holds (at least) the snapshot entries of the chunk's accounts."""
    out = Plan()
    for row in result.accepted:
        old = snap.get(row.account_id)
        if old is None:
            out.created.append(row)
        elif old.content_hash != row.content_hash:
            out.updated.append(row)
        else:
            out.unchanged += 1
            if old.raw_hash != row.raw_hash or old.row_number != row.row_number:
                out.refreshed.append(row)
    for account_id, row_number in result.unchanged:
        out.unchanged += 1
        old = snap.get(account_id)
        if old is not None and old.row_number != row_number:
            out.moved.append((account_id, row_number))
    return out


Contacts = dict[str, dict[str, Any]]  # channel -> {"address": ..., "consent": ...} (ContactPoint's JSON)
_NO_EXTRA: Mapping[str, Mapping[str, Any]] = {}


@functools.cache
def _extra_channels() -> tuple[tuple[str, str], ...]:
    """(name, address kind) of each registered channel other than sms and email."""
    return tuple((spec.name, spec.address_kind) for spec in extra_channel_specs())


def event_contacts(
    phone: str | None,
    sms_consent: bool,
    email: str | None,
    email_consent: bool,
    extra: Mapping[str, Mapping[str, Any]] = _NO_EXTRA,
    *,
    keep_consent: bool = True,
) -> Contacts:
    """`AccountChanged.contacts`: sms and email from the flat fields, every other registered channel from
    `extra` (its own sheet columns, as `AccountRow.extra_contacts_data` / the snapshot's `contacts`) or, when
    the sheet said nothing of it, `implied_contact`. `keep_consent=False` clears every consent."""
    out: Contacts = {
        "sms": {"address": phone, "consent": sms_consent and keep_consent},
        "email": {"address": email, "consent": email_consent and keep_consent},
    }
    for name, kind in _extra_channels():
        own = extra.get(name)
        address, consent = (own["address"], bool(own["consent"])) if own else implied_contact(kind, phone)
        out[name] = {"address": address, "consent": consent and keep_consent}
    return out


def row_contacts(row: AccountRow) -> Contacts:
    extra = row.extra_contacts_data() if row.extra_contacts else _NO_EXTRA
    return event_contacts(row.phone, row.sms_consent, row.email, row.email_consent, extra)


def account_event(row: AccountRow, change: str, as_of: datetime, source: Source = "sheet") -> AccountChanged:
    return AccountChanged(
        account_id=row.account_id,
        change=change,  # type: ignore[arg-type]
        source=source,
        source_row=row.row_number,
        customer_name=row.customer_name,
        phone=row.phone,
        email=row.email,
        balance_minor=row.balance_minor,
        currency=row.currency,
        due_date=row.due_date,
        last_payment_date=row.last_payment_date,
        last_payment_minor=row.last_payment_minor,
        timezone=row.timezone,
        country=row.country,
        region=row.region,
        sms_consent=row.sms_consent,
        email_consent=row.email_consent,
        contacts=row_contacts(row),  # validated into ContactPoints
        status=row.status,
        content_hash=row.content_hash,
        as_of=as_of,
    )


# `account_event(...).model_dump_json()` without building the model: the fields in the model's order,
# serialised by pydantic's own serializer (same JSON, byte for byte: tested), for the ~100k events of a first
# run. The row's values are already normalised and typed by validation.
_EVENT_FIELDS = (
    "account_id", "change", "source", "source_row", "customer_name", "phone", "email", "balance_minor",
    "currency", "due_date", "last_payment_date", "last_payment_minor", "timezone", "country", "region",
    "sms_consent", "email_consent", "contacts", "status", "content_hash", "as_of",
)  # fmt: skip
if tuple(AccountChanged.model_fields) != _EVENT_FIELDS:  # pragma: no cover - caught by any test run
    raise RuntimeError("AccountChanged changed: update snapshot.service.account_record")


def account_record(
    row: AccountRow,
    change: Literal["created", "updated"],
    as_of: datetime,
    source: Source,
    *,
    ce_source: str,
    id: str,
    time: datetime,
    seal: Callable[[str | None], str | None] | None = None,
) -> OutgoingRecord:
    """The outbox record of `account_event(row, change, as_of, source)` (see `_EVENT_FIELDS`); with `seal`
    (the row's `Sealer` from `write_rows`) its personal fields already sealed, as the outbox would."""
    contacts = row_contacts(row)
    name, phone, email = row.customer_name, row.phone, row.email
    if seal is not None:
        name, phone, email = seal(name) or name, seal(phone), seal(email)
        for c in contacts.values():
            c["address"] = seal(c["address"])
    value = pydantic_core.to_json(
        {
            "account_id": row.account_id,
            "change": change,
            "source": source,
            "source_row": row.row_number,
            "customer_name": name,
            "phone": phone,
            "email": email,
            "balance_minor": row.balance_minor,
            "currency": row.currency,
            "due_date": row.due_date,
            "last_payment_date": row.last_payment_date,
            "last_payment_minor": row.last_payment_minor,
            "timezone": row.timezone,
            "country": row.country,
            "region": row.region,
            "sms_consent": row.sms_consent,
            "email_consent": row.email_consent,
            "contacts": contacts,
            "status": row.status,
            "content_hash": row.content_hash,
            "as_of": as_of,
        }
    )
    return record(
        AccountChanged.ce_type,
        AccountChanged.topic,
        row.account_id,
        row.account_id,
        value,
        source=ce_source,
        id=id,
        time=time,
    )


def data_event(
    account_id: str,
    change: str,
    source: str,
    row_number: int,
    content_hash: str,
    data: Mapping[str, Any],
    as_of: datetime,
    *,
    keep_consent: bool = True,
) -> AccountChanged:
    """An `account-changed` built from a snapshot's stored `data` (removals, payments)."""
    phone, email = data.get("phone"), data.get("email")
    sms_consent, email_consent = bool(data.get("sms_consent")), bool(data.get("email_consent"))
    contacts = event_contacts(
        phone, sms_consent, email, email_consent, data.get("contacts") or _NO_EXTRA, keep_consent=keep_consent
    )
    return AccountChanged(
        account_id=account_id,
        change=change,  # type: ignore[arg-type]
        source=source,  # type: ignore[arg-type]
        source_row=row_number or None,
        customer_name=data["customer_name"],
        phone=phone,
        email=email,
        balance_minor=data["balance_minor"],
        currency=data["currency"],
        due_date=date.fromisoformat(data["due_date"]),
        last_payment_date=date.fromisoformat(d) if (d := data.get("last_payment_date")) else None,
        last_payment_minor=data.get("last_payment_minor"),
        timezone=data.get("timezone"),
        country=data.get("country"),
        region=data.get("region"),
        sms_consent=sms_consent and keep_consent,
        email_consent=email_consent and keep_consent,
        contacts=contacts,  # validated into ContactPoints
        status=AccountStatus(data.get("status", "open")),
        content_hash=content_hash,
        as_of=as_of,
    )


def removed_event(
    account_id: str,
    row_number: int,
    content_hash: str,
    data: Mapping[str, Any],
    as_of: datetime,
    source: Source = "sheet",
) -> AccountChanged:
    """The last known state of an account that left its source: consumers close its sequences (the
    segmenter stops dunning, escalation closes cases); history stays. Consent is cleared."""
    return data_event(
        account_id, "removed", source, row_number, content_hash, data, as_of, keep_consent=False
    )


# The personal strings of a snapshot's `data`, sealed at rest with the account's data key (arrears_shared.vault);
# everything else in it (balance, dates, consent, zone, status, warnings) stays readable to SQL.
PERSONAL: tuple[str, ...] = ("customer_name", "phone", "email", "notes", "contacts.*.address")
_FLAT_PERSONAL = ("customer_name", "phone", "email", "notes")
_ADDRESSES = ("phone", "email", "notes")  # dropped (None) when they cannot be opened
_CONTACT_ADDRESS = ("*.address",)
_NOT_OPENED = (cipher.ERASED, cipher.UNREADABLE)


class Sealer:
    """Seals one account's strings with its data key, each distinct value once: a row's snapshot entry and its
    `account-changed` event share the ciphertexts (the outbox keeps sealed values as they are), so a first
    run seals each name and address once, not twice."""

    __slots__ = ("_aead", "_subject", "_memo")

    def __init__(self, aead: AESGCM, subject: str) -> None:
        self._aead = aead
        self._subject = subject
        self._memo: dict[str, str] = {}

    def __call__(self, value: str | None) -> str | None:
        if not value:
            return value
        out = self._memo.get(value)
        if out is None:
            sealed = cipher.is_sealed(value)
            out = self._memo[value] = value if sealed else cipher.seal(self._aead, self._subject, value)
        return out


def _seal_data(seal: Sealer, data: dict[str, Any]) -> dict[str, Any]:
    """`cipher.seal_fields(aead, account_id, data, PERSONAL)`, unrolled (a first run seals ~400k strings)."""
    for k in _FLAT_PERSONAL:
        v = data.get(k)
        if v and v.__class__ is str:
            data[k] = seal(v)
    if contacts := data.get("contacts"):
        fields.apply(contacts, _CONTACT_ADDRESS, lambda v: seal(v) or v)
    return data


def seal_data(aead: AESGCM, account_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """`data` (changed in place and returned) with its `PERSONAL` strings sealed (those already sealed stay)."""
    return _seal_data(Sealer(aead, account_id), data)


def open_data(keys: Keys, account_id: str, data: dict[str, Any]) -> dict[str, Any]:
    """`data` (changed in place and returned) with its `PERSONAL` strings opened with the account's key from
    `keys` (`Vault.for_reading`). Plaintext written before sealing reads as it is. An erased account's (or
    an unopenable value) reads as `[erased]` for the name and as no address / no notes: nothing is sent to
    it or matched with it."""
    cipher.open_fields(keys.get(account_id), account_id, data, PERSONAL)
    for k in _ADDRESSES:
        if data.get(k) in _NOT_OPENED:
            data[k] = None
    for contact in (data.get("contacts") or {}).values():
        if isinstance(contact, dict) and contact.get("address") in _NOT_OPENED:
            contact["address"] = None
            contact["consent"] = False
    return data


async def write_rows(
    conn: AsyncConnection,
    schema: str,
    rows: Sequence[AccountRow],
    now: datetime,
    source: Source = "sheet",
) -> dict[str, Sealer]:
    """Upsert the rows' snapshot entries, their personal strings sealed with keys created in `conn`'s
    transaction where missing (one key query for the batch). Returns each row's `Sealer`, for its event."""
    if not rows:
        return {}
    keys = await vault().for_writing(conn, [r.account_id for r in rows])
    sealers = {a: Sealer(k, a) for a, k in keys.items()}
    await conn.execute(
        text(
            f"INSERT INTO {schema}.snapshot AS s (account_id, content_hash, raw_hash, row_number, data, "
            "updated_at, origin) "
            "SELECT a, c, r, n, d, :now, :src FROM unnest(CAST(:a AS text[]), CAST(:c AS text[]), "
            "CAST(:r AS text[]), CAST(:n AS int[]), CAST(:d AS jsonb[])) AS v(a, c, r, n, d) "
            "ON CONFLICT (account_id) DO UPDATE SET content_hash = EXCLUDED.content_hash, "
            "raw_hash = EXCLUDED.raw_hash, row_number = EXCLUDED.row_number, data = EXCLUDED.data, "
            "updated_at = EXCLUDED.updated_at, "
            "origin = CASE WHEN EXCLUDED.origin = 'sheet' THEN 'sheet' ELSE s.origin END"
        ),
        {
            "src": source,
            "a": [r.account_id for r in rows],
            "c": [r.content_hash for r in rows],
            "r": [r.raw_hash for r in rows],
            "n": [r.row_number for r in rows],
            "d": [  # pydantic_core: twice json.dumps' speed
                pydantic_core.to_json(_seal_data(sealers[r.account_id], r.to_data())).decode() for r in rows
            ],
            "now": now,
        },
    )
    return sealers


async def move_rows(conn: AsyncConnection, schema: str, moved: Sequence[tuple[str, int]]) -> None:
    if not moved:
        return
    await conn.execute(
        text(
            f"UPDATE {schema}.snapshot s SET row_number = v.n FROM unnest(CAST(:a AS text[]), "
            "CAST(:n AS int[])) AS v(a, n) WHERE s.account_id = v.a"
        ),
        {"a": [a for a, _ in moved], "n": [n for _, n in moved]},
    )


async def delete_rows(
    conn: AsyncConnection, schema: str, account_ids: Sequence[str]
) -> list[tuple[str, int, str, dict[str, Any]]]:
    """Delete the accounts' entries: (account id, row number, content hash, data opened, see `open_data`)."""
    if not account_ids:
        return []
    result = await conn.execute(
        text(
            f"DELETE FROM {schema}.snapshot WHERE account_id = ANY(CAST(:a AS text[])) "
            "RETURNING account_id, row_number, content_hash, data"
        ),
        {"a": list(account_ids)},
    )
    found = [(r[0], r[1], r[2], r[3] if isinstance(r[3], dict) else json.loads(r[3])) for r in result]
    if not found:
        return []
    keys = await vault().for_reading(conn, [a for a, *_ in found])
    return [(a, n, h, open_data(keys, a, d)) for a, n, h, d in found]


RejectKey = tuple[str, str | None, str | None, str]


def reject_key(rej: Rejection) -> RejectKey:
    return (rej.account_id or f"row:{rej.row_number}", rej.column, rej.value, rej.reason)


async def reject_keys(conn: AsyncConnection, schema: str, source: str) -> set[RejectKey]:
    """The source's current rejects, to publish only new or changed ones."""
    rows = await conn.execute(
        text(
            f"SELECT coalesce(account_id, 'row:' || row_number), \"column\", value, reason "
            f"FROM {schema}.rejects WHERE source = :s"
        ),
        {"s": source},
    )
    return set(rows.tuples())


async def replace_rejects(
    conn: AsyncConnection,
    schema: str,
    source: str,
    batch_id: str,
    rejections: Sequence[Rejection],
    now: datetime,
) -> None:
    """The source's current rejects become those of this run."""
    await conn.execute(text(f"DELETE FROM {schema}.rejects WHERE source = :s"), {"s": source})
    await insert_rejects(conn, schema, source, batch_id, rejections, now)


async def insert_rejects(
    conn: AsyncConnection,
    schema: str,
    source: str,
    batch_id: str,
    rejections: Sequence[Rejection],
    now: datetime,
) -> None:
    if not rejections:
        return
    await conn.execute(
        text(
            f'INSERT INTO {schema}.rejects (source, batch_id, row_number, account_id, "column", value, reason, '
            "balance_minor, currency, rejected_at) "
            "SELECT :s, CAST(:b AS uuid), n, a, c, v, r, bal, cur, :now FROM unnest(CAST(:n AS int[]), "
            "CAST(:a AS text[]), CAST(:c AS text[]), CAST(:v AS text[]), CAST(:r AS text[]), "
            "CAST(:bal AS bigint[]), CAST(:cur AS text[])) AS x(n, a, c, v, r, bal, cur)"
        ),
        {
            "s": source,
            "b": batch_id,
            "n": [r.row_number for r in rejections],
            "a": [r.account_id for r in rejections],
            "c": [r.column for r in rejections],
            "v": [r.value for r in rejections],
            "r": [r.reason for r in rejections],
            "bal": [r.balance_minor for r in rejections],
            "cur": [r.currency for r in rejections],
            "now": now,
        },
    )


def rejected_event(
    rej: Rejection, batch_id: str, now: datetime, source: Literal["sheet", "upload", "payment"] = "sheet"
) -> IngestRejected:
    return IngestRejected(
        account_id=rej.account_id or f"row:{rej.row_number}",
        source=source,
        batch_id=batch_id,
        row_number=rej.row_number,
        column=rej.column,
        value=rej.value,
        reason=rej.reason,
        balance_minor=rej.balance_minor,
        rejected_at=now,
    )
