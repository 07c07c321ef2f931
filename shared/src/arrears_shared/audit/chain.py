"""The append-only, hash-chained audit log; each service keeps its own chain in its own schema.

Every entry's `hash` = SHA-256 over its canonical JSON (seq, time, actor, role, action, entity, entity_id,
before, after, reason, request id when there is one) and the previous entry's hash, so editing any entry
breaks its hash and deleting one breaks the chain (a gap in `seq`, or a `prev_hash` that no longer
matches). Appends are serialised by a transaction-scoped advisory lock per schema; UPDATE and DELETE are
refused by a trigger. Deleting the newest entries cannot be seen from the chain alone: keep the head
`seq:hash` printed by `arrears audit verify` and pass it back with `--anchor` (or export it to your SIEM),
which detects truncation too.

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
) -> str:
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
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


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
    )
    await conn.execute(
        text(
            f"""INSERT INTO {schema}.audit_log (seq, at, actor, role, action, entity, entity_id, before, after,
                reason, prev_hash, hash, request_id)
            VALUES (:seq, :at, :actor, :role, :action, :entity, :eid, CAST(:before AS jsonb),
                    CAST(:after AS jsonb), :reason, :prev, :hash, :rid)"""
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
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify(conn: AsyncConnection, schema: str, anchor: tuple[int, str] | None = None) -> VerifyReport:
    """Recompute the whole chain. `anchor` = a (seq, hash) recorded earlier that must still be there."""
    report = VerifyReport(schema=schema)
    prev, expected_seq = GENESIS, 1
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
        )
        if recomputed != r.hash:
            report.problems.append(f"entry {r.seq}: content does not match its hash (edited)")
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
    conn: AsyncConnection, schema: str, entity_id: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    q = (
        "SELECT seq, at, actor, role, action, entity, entity_id, before, after, reason, request_id, hash "
        f"FROM {schema}.audit_log"
    )
    params: dict[str, Any] = {"n": limit}
    if entity_id:
        q += " WHERE entity_id = :e"
        params["e"] = entity_id
    rows = (await conn.execute(text(q + " ORDER BY seq DESC LIMIT :n"), params)).all()
    return [dict(r._mapping) for r in rows]
