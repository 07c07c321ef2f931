"""The append-only, keyed hash chain of audit entries; each service keeps its own chain in its own schema.

Every entry's `hash` = HMAC-SHA256, under the audit key named by its `key_id` (keyring.py; the database
never holds the key), over its canonical JSON (seq, time, actor, role, action, entity, entity_id, before,
after, reason, request id when there is one, key id) and the previous entry's hash. Editing any entry breaks
its HMAC, deleting one breaks the chain (a gap in `seq`, or a `prev_hash` that no longer matches), and
without the key nobody (not even a database superuser) can write a chain that verifies. Entries written
before the chain was keyed (`key_id` NULL) hash with plain SHA-256 and are accepted only before the first
keyed entry. Appends are serialised by a transaction-scoped advisory lock per schema; UPDATE, DELETE and
TRUNCATE are refused by triggers and by privilege (the service's runtime role may only INSERT and SELECT;
db/roles.py). Deleting the newest entries cannot be seen from the chain alone: the hourly check logs the
head (monitor.py) and `arrears audit verify --anchor` compares against a head recorded earlier.

Entries are written inside the caller's transaction, so the change and its audit entry commit together.
The actor is always the authenticated principal (`record`), never a name taken from a request body.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..auth.principal import Principal
from ..request_context import REQUEST_ID
from .keyring import Keyring, keyring

GENESIS = "0" * 64


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str)) if value is not None else None


def entry_hash(
    *,
    seq: int,
    at: datetime,
    actor: str,
    role: str,
    action: str,
    entity: str,
    entity_id: str,
    before: Any,
    after: Any,
    reason: str,
    prev_hash: str,
    request_id: str | None = None,
    key_id: str | None = None,
    ring: Keyring | None = None,
) -> str | None:
    """The entry's seal: HMAC-SHA256 under key `key_id` (None when the ring lacks that key), or the plain
    SHA-256 of an entry written before the chain was keyed (`key_id` None)."""
    body = {
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "role": role,
        "action": action,
        "entity": entity,
        "entity_id": entity_id,
        "before": _canonical(before),
        "after": _canonical(after),
        "reason": reason,
        "prev": prev_hash,
    }
    if request_id is not None:  # entries written before request ids were recorded hash as they did
        body["request_id"] = request_id
    if key_id is not None:
        body["key_id"] = key_id
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    if key_id is None:
        return hashlib.sha256(blob).hexdigest()
    return (ring or keyring()).seal(key_id, blob)


async def append(
    conn: AsyncConnection,
    schema: str,
    *,
    actor: str,
    role: str,
    action: str,
    entity: str,
    entity_id: str,
    before: Any = None,
    after: Any = None,
    reason: str = "",
    at: datetime | None = None,
    request_id: str | None = None,
) -> int:
    """Append one entry inside the caller's transaction (it commits or rolls back with the change)."""
    at = (at or datetime.now(UTC)).astimezone(UTC)
    request_id = request_id or REQUEST_ID.get()
    ring = keyring()
    key_id = ring.current_id  # no key: refuse before writing anything
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"arrears-audit-{schema}"})
    last = (
        await conn.execute(text(f"SELECT seq, hash FROM {schema}.audit_log ORDER BY seq DESC LIMIT 1"))
    ).first()
    seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
    before, after = _canonical(before), _canonical(after)
    h = entry_hash(
        seq=seq,
        at=at,
        actor=actor,
        role=role,
        action=action,
        entity=entity,
        entity_id=entity_id,
        before=before,
        after=after,
        reason=reason,
        prev_hash=prev,
        request_id=request_id,
        key_id=key_id,
        ring=ring,
    )
    await conn.execute(
        text(
            f"""INSERT INTO {schema}.audit_log (seq, at, actor, role, action, entity, entity_id, before, after,
                reason, prev_hash, hash, request_id, key_id)
            VALUES (:seq, :at, :actor, :role, :action, :entity, :eid, CAST(:before AS jsonb),
                    CAST(:after AS jsonb), :reason, :prev, :hash, :rid, :kid)"""
        ),
        {
            "seq": seq,
            "at": at,
            "actor": actor,
            "role": role,
            "action": action,
            "entity": entity,
            "eid": entity_id,
            "before": json.dumps(before) if before is not None else None,
            "after": json.dumps(after) if after is not None else None,
            "reason": reason,
            "prev": prev,
            "hash": h,
            "rid": request_id,
            "kid": key_id,
        },
    )
    return seq


async def record(
    conn: AsyncConnection,
    schema: str,
    who: Principal,
    action: str,
    entity: str,
    entity_id: str,
    *,
    before: Any = None,
    after: Any = None,
    reason: str = "",
    at: datetime | None = None,
) -> int:
    """Append an entry whose actor is the authenticated principal."""
    return await append(
        conn,
        schema,
        actor=who.name,
        role=who.role,
        action=action,
        entity=entity,
        entity_id=entity_id,
        before=before,
        after=after,
        reason=reason,
        at=at,
    )


@dataclass
class VerifyReport:
    schema: str = ""
    entries: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    unkeyed_entries: int = 0  # written before the chain was keyed (plain SHA-256)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify(
    conn: AsyncConnection,
    schema: str,
    anchor: tuple[int, str] | None = None,
    *,
    ring: Keyring | None = None,
) -> VerifyReport:
    """Recompute the whole chain. `anchor` = a (seq, hash) recorded earlier (a published head) that must
    still be there. `ring` = the audit keys (default: the environment's)."""
    ring = ring or keyring()
    report = VerifyReport(schema=schema)
    prev, expected_seq, keyed = GENESIS, 1, False
    anchor_seen = False
    result = await conn.stream(text(f"SELECT * FROM {schema}.audit_log ORDER BY seq"))
    async for r in result:
        report.entries += 1
        if r.seq != expected_seq:
            report.problems.append(f"entries {expected_seq}..{r.seq - 1} are missing (deleted)")
        if r.prev_hash != prev:
            report.problems.append(
                f"entry {r.seq}: prev_hash does not match entry {r.seq - 1} (chain broken)"
            )
        if r.key_id is None:
            report.unkeyed_entries += 1
            if keyed:
                report.problems.append(f"entry {r.seq}: unkeyed entry after keyed ones (forged)")
        elif r.key_id not in ring.ids:
            report.problems.append(
                f"entry {r.seq}: sealed with audit key {r.key_id}, which is not configured"
            )
        keyed = keyed or r.key_id is not None
        recomputed = entry_hash(
            seq=r.seq,
            at=r.at,
            actor=r.actor,
            role=r.role,
            action=r.action,
            entity=r.entity,
            entity_id=r.entity_id,
            before=r.before,
            after=r.after,
            reason=r.reason,
            prev_hash=r.prev_hash,
            request_id=r.request_id,
            key_id=r.key_id,
            ring=ring,
        )
        if recomputed is not None and recomputed != r.hash:
            report.problems.append(f"entry {r.seq}: content does not match its hash (edited, or wrong key)")
        if anchor and r.seq == anchor[0]:
            anchor_seen = True
            if r.hash != anchor[1]:
                report.problems.append(f"entry {r.seq}: hash differs from the recorded anchor")
        prev, expected_seq = r.hash, r.seq + 1
        report.head_seq, report.head_hash = r.seq, r.hash
    if anchor and not anchor_seen:
        report.problems.append(f"anchor entry {anchor[0]} is gone (log truncated)")
    return report


async def list_entries(
    conn: AsyncConnection,
    schema: str,
    entity_id: str | None = None,
    limit: int = 200,
    *,
    before_seq: int | None = None,
) -> list[dict[str, Any]]:
    """Newest first; `before_seq` continues after a page whose last entry had that seq (keyset paging)."""
    q = (
        "SELECT seq, at, actor, role, action, entity, entity_id, before, after, reason, request_id, hash "
        f"FROM {schema}.audit_log WHERE TRUE"
    )
    params: dict[str, Any] = {"n": limit}
    if entity_id:
        q += " AND entity_id = :e"
        params["e"] = entity_id
    if before_seq is not None:
        q += " AND seq < :before"
        params["before"] = before_seq
    rows = (await conn.execute(text(q + " ORDER BY seq DESC LIMIT :n"), params)).all()
    return [dict(r._mapping) for r in rows]
