"""Sign-in lockout per API key: after `threshold` failed sign-ins inside `window`, the key is locked.

A failure counts against a key when the caller presents a well-formed key whose (public) key id is known and
active but whose secret is wrong — at any service's gate or the console's /login form. Once locked, every
sign-in with that key id fails with a clear message, *even with the right secret*, until an admin unlocks it
(`POST /admin/security/locks/{key_id}/unlock`, the console's incident page, `arrears keys unlock`; audited)
or, when `duration` is set, the lock expires. Unknown key ids lock nothing (there is nothing to protect; the
per-address `FailureThrottle` slows such guessing).

Keys holding the `service` role are never locked: anyone who saw a key id in a log could otherwise stop an
integration with a few wrong secrets; their 256-bit secrets and the per-address throttle protect them.

The count lives in `iam.sign_in_locks` (shared by all replicas and services); a lock is written to
`iam.security_events`, counted in `arrears_auth_lockouts_total` and logged — never with a secret.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import paging

SCHEMA = "iam"
log = logging.getLogger(__name__)

LOCKOUTS = Counter("arrears_auth_lockouts_total", "API keys locked after repeated failed sign-ins")
LOCKED_ATTEMPTS = Counter(
    "arrears_auth_locked_attempts_total", "Sign-ins refused because the key is locked (right secret or not)"
)


@dataclass(frozen=True, slots=True)
class LockoutPolicy:
    threshold: int = 6
    window: timedelta = timedelta(minutes=10)
    duration: timedelta | None = timedelta(minutes=30)  # None: until an admin unlocks

    @classmethod
    def from_settings(cls, s: Any) -> LockoutPolicy:
        return cls(
            threshold=s.auth_lockout_threshold,
            window=timedelta(seconds=s.auth_lockout_window_s),
            duration=timedelta(seconds=s.auth_lockout_duration_s) if s.auth_lockout_duration_s else None,
        )


@dataclass(frozen=True, slots=True)
class Lock:
    key_id: str
    failures: int
    locked_at: datetime | None
    locked_until: datetime | None
    last_failure_at: datetime | None
    name: str | None = None
    roles: tuple[str, ...] = ()

    def active(self, now: datetime) -> bool:
        return self.locked_at is not None and (self.locked_until is None or self.locked_until > now)


class KeyLocked(Exception):
    """Sign-in refused: the key is locked (the message is safe to show)."""

    def __init__(self, key_id: str, until: datetime | None) -> None:
        self.key_id, self.until = key_id, until
        when = f" until {until.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if until else ""
        super().__init__(
            f"this API key ({key_id}) is locked after repeated failed sign-ins{when}; "
            "an admin can unlock it (console: Ops > Incident, or `arrears keys unlock`)"
        )


def locked(locked_at: datetime | None, locked_until: datetime | None, now: datetime) -> bool:
    return locked_at is not None and (locked_until is None or locked_until > now)


async def record_failure(
    conn: AsyncConnection,
    key_id: str,
    policy: LockoutPolicy,
    *,
    service: str = "",
    name: str | None = None,
    now: datetime | None = None,
) -> bool:
    """Count one failed sign-in with `key_id` in the caller's transaction (commit it). True when this failure
    locked the key."""
    now = now or datetime.now(UTC)
    until = now + policy.duration if policy.duration else None
    row = (
        await conn.execute(
            text(
                f"""INSERT INTO {SCHEMA}.sign_in_locks AS l (key_id, failures, last_failure_at)
                VALUES (:id, ARRAY[CAST(:now AS timestamptz)], :now)
                ON CONFLICT (key_id) DO UPDATE SET
                    failures = ARRAY(SELECT t FROM unnest(l.failures || CAST(:now AS timestamptz)) t
                                     WHERE t > CAST(:now AS timestamptz) - make_interval(secs => :win)
                                     ORDER BY t DESC LIMIT :n),
                    last_failure_at = :now
                RETURNING cardinality(failures) AS n, locked_at, locked_until"""
            ),
            {"id": key_id, "now": now, "win": policy.window.total_seconds(), "n": policy.threshold},
        )
    ).one()
    newly = row.n >= policy.threshold and not locked(row.locked_at, row.locked_until, now)
    if newly:
        await conn.execute(
            text(
                f"""UPDATE {SCHEMA}.sign_in_locks SET locked_at = :now, locked_until = :until,
                    unlocked_at = NULL, unlocked_by = NULL WHERE key_id = :id"""
            ),
            {"id": key_id, "now": now, "until": until},
        )
        await security_event(
            conn,
            "sign_in_locked",
            key_id,
            service=service,
            detail={
                "name": name,
                "failures": row.n,
                "window_s": policy.window.total_seconds(),
                "until": until,
            },
        )
        LOCKOUTS.inc()
        log.warning(
            "API key locked after repeated failed sign-ins",
            extra={"key_id": key_id, "failures": row.n, "until": until.isoformat() if until else None},
        )
    return newly


async def unlock(conn: AsyncConnection, key_id: str, *, by: str, now: datetime | None = None) -> Lock | None:
    """Lift the lock and forget the failures (in the caller's transaction, which audits it). None when the
    key is not locked."""
    now = now or datetime.now(UTC)
    before = await get(conn, key_id)
    if before is None or not before.active(now):
        return None
    await conn.execute(
        text(
            f"""UPDATE {SCHEMA}.sign_in_locks SET failures = '{{}}', locked_at = NULL, locked_until = NULL,
                unlocked_at = :now, unlocked_by = :by WHERE key_id = :id"""
        ),
        {"id": key_id, "now": now, "by": by},
    )
    return before


_SELECT = f"""SELECT l.key_id, cardinality(l.failures) AS failures, l.locked_at, l.locked_until,
    l.last_failure_at, k.name, k.roles FROM {SCHEMA}.sign_in_locks l
    LEFT JOIN {SCHEMA}.api_keys k ON k.key_id = l.key_id"""


def _lock(r: Any) -> Lock:
    return Lock(
        key_id=r.key_id,
        failures=r.failures,
        locked_at=r.locked_at,
        locked_until=r.locked_until,
        last_failure_at=r.last_failure_at,
        name=r.name.split("~", 1)[0] if r.name else None,
        roles=tuple(r.roles or ()),
    )


async def get(conn: AsyncConnection, key_id: str) -> Lock | None:
    row = (await conn.execute(text(f"{_SELECT} WHERE l.key_id = :id"), {"id": key_id})).first()
    return _lock(row) if row else None


async def page_locked(
    conn: AsyncConnection, *, limit: int = 100, cursor: str | None = None, now: datetime | None = None
) -> tuple[list[Lock], str | None]:
    """One page of the keys locked now, most recent first, and the next page's cursor (None on the last)."""
    params: dict[str, Any] = {"now": now or datetime.now(UTC), "n": limit + 1}
    after = ""
    if cursor:
        params["at"], params["id"] = paging.decode(cursor, (datetime, str))
        after = " AND (l.locked_at, l.key_id) < (:at, :id)"
    rows = await conn.execute(
        text(
            f"""{_SELECT} WHERE l.locked_at IS NOT NULL AND (l.locked_until IS NULL OR l.locked_until > :now)
            {after} ORDER BY l.locked_at DESC, l.key_id DESC LIMIT :n"""
        ),
        params,
    )
    found, nxt = paging.page(rows.all(), limit, lambda r: (r.locked_at, r.key_id))
    return [_lock(r) for r in found], nxt


async def locked_keys(conn: AsyncConnection, *, now: datetime | None = None) -> list[Lock]:
    """Keys locked now (all pages), most recent first."""
    out: list[Lock] = []
    cursor: str | None = None
    while True:
        found, cursor = await page_locked(conn, limit=500, cursor=cursor, now=now)
        out += found
        if cursor is None:
            return out


async def security_event(
    conn: AsyncConnection,
    kind: str,
    subject: str,
    *,
    role: str = "",
    service: str = "",
    detail: dict[str, Any] | None = None,
    dedupe: str | None = None,
) -> bool:
    """Append a security event (what the platform raised by itself); False when `dedupe` was taken."""
    row = (
        await conn.execute(
            text(
                f"""INSERT INTO {SCHEMA}.security_events (kind, subject, role, service, detail, dedupe)
                VALUES (:k, :s, :r, :svc, CAST(:d AS jsonb), :dd) ON CONFLICT (dedupe) DO NOTHING
                RETURNING event_id"""
            ),
            {
                "k": kind,
                "s": subject,
                "r": role,
                "svc": service,
                "d": json.dumps(detail or {}, default=str),
                "dd": dedupe,
            },
        )
    ).first()
    return row is not None


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    event_id: str
    at: datetime
    kind: str
    subject: str
    role: str
    service: str
    detail: dict[str, Any]


async def page_events(
    conn: AsyncConnection, *, kind: str | None = None, limit: int = 50, cursor: str | None = None
) -> tuple[list[SecurityEvent], str | None]:
    """One page of security events, newest first, and the next page's cursor (None on the last)."""
    params: dict[str, Any] = {"k": kind, "n": limit + 1}
    after = ""
    if cursor:
        params["at"], params["id"] = paging.decode(cursor, (datetime, str))
        after = " AND (at, event_id) < (:at, :id)"
    rows = await conn.execute(
        text(
            f"""SELECT event_id, at, kind, subject, role, service, detail FROM {SCHEMA}.security_events
            WHERE (CAST(:k AS text) IS NULL OR kind = :k){after} ORDER BY at DESC, event_id DESC LIMIT :n"""
        ),
        params,
    )
    found, nxt = paging.page(rows.all(), limit, lambda r: (r.at, r.event_id))
    events = [
        SecurityEvent(r.event_id, r.at, r.kind, r.subject, r.role, r.service, dict(r.detail or {}))
        for r in found
    ]
    return events, nxt


async def recent_events(
    conn: AsyncConnection, *, kind: str | None = None, limit: int = 50
) -> list[SecurityEvent]:
    """The newest `limit` security events."""
    return (await page_events(conn, kind=kind, limit=limit))[0]
