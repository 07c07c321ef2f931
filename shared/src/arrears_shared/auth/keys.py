"""API keys: `ark_<key id>_<secret>`, stored only as a SHA-256 of the whole key, in the platform's `iam` schema.

- The key id (12 hex characters) is public: it is the lookup handle and is shown in listings beside the
  recognisable prefix `ark_`, so a leaked key found in a log or a repository can be traced and revoked.
- The secret has 256 bits of entropy, so one SHA-256 is the right hash (a slow password hash would only slow
  every request); the stored digest is compared with `hmac.compare_digest`, in constant time.
- The plaintext is returned once, by `create` / `rotate`, and never stored or logged.
- `last_used_at` is written at most once a minute per key, so verification stays a primary-key read (joined
  with the key's sign-in lock, lockout.py: a locked key fails whatever its secret).
- `revoke_all` revokes every key at once (incident response) and ends the console sessions opened with them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import paging
from .lockout import LOCKED_ATTEMPTS, KeyLocked, LockoutPolicy, locked, record_failure
from .principal import Principal
from .roles import ROLES

__all__ = ["KeyLocked", "LockoutPolicy"]

SCHEMA = "iam"
PREFIX = "ark_"
_KEY_RE = re.compile(r"^ark_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
NAME_PATTERN = r"^[A-Za-z0-9_.@-]{1,100}$"
_TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    name: str
    roles: tuple[str, ...]
    team: str | None
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def display(self) -> str:
        return f"{PREFIX}{self.key_id}_…"

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate() -> tuple[str, str]:
    """A new key: (key_id, plaintext)."""
    key_id = secrets.token_hex(6)
    return key_id, f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def parse(key: str) -> str | None:
    """The key id of a well-formed key, else None."""
    m = _KEY_RE.match(key)
    return m.group(1) if m else None


def _check_roles(roles: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise ValueError(f"roles must be a non-empty subset of {', '.join(ROLES)} (got {list(roles)})")
    return tuple(sorted(set(roles), key=ROLES.index))


_COLUMNS = "key_id, name, roles, team, created_at, created_by, expires_at, last_used_at, revoked_at"


def _info(row: Any) -> KeyInfo:
    return KeyInfo(
        key_id=row.key_id,
        name=row.name,
        roles=tuple(row.roles),
        team=row.team,
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


class KeyNameTaken(ValueError):
    """A key that is not revoked (expired or not) already has the name."""


async def create(
    conn: AsyncConnection,
    *,
    name: str,
    roles: tuple[str, ...] | list[str],
    created_by: str,
    team: str | None = None,
    expires_at: datetime | None = None,
    now: datetime | None = None,
) -> tuple[KeyInfo, str]:
    """Create a key; returns its info and the plaintext (shown once). Names are unique among active keys
    (`KeyNameTaken`, a ValueError like every refusal here)."""
    if not re.match(NAME_PATTERN, name):
        raise ValueError("key name must be 1-100 of A-Z a-z 0-9 _ . @ -")
    now = now or datetime.now(UTC)
    if expires_at is not None and expires_at <= now:
        raise ValueError("expiry must be in the future")
    key_id, plaintext = generate()
    row = (
        await conn.execute(
            text(
                f"""INSERT INTO {SCHEMA}.api_keys (key_id, name, roles, team, key_hash, created_at, created_by,
                    expires_at)
                VALUES (:id, :name, :roles, :team, :hash, :now, :by, :exp)
                ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING
                RETURNING {_COLUMNS}"""
            ),
            {
                "id": key_id,
                "name": name,
                "roles": list(_check_roles(roles)),
                "team": team,
                "hash": digest(plaintext),
                "now": now,
                "by": created_by,
                "exp": expires_at,
            },
        )
    ).first()
    if row is None:
        raise KeyNameTaken(
            "key names are unique among active keys: revoke or rotate that key, or choose another"
        )
    return _info(row), plaintext


async def page_keys(
    conn: AsyncConnection, *, include_revoked: bool = False, limit: int = 100, cursor: str | None = None
) -> tuple[list[KeyInfo], str | None]:
    """One page of keys, newest first, and the cursor of the next page (None on the last one)."""
    where = ["revoked_at IS NULL"] if not include_revoked else []
    params: dict[str, Any] = {"n": limit + 1}
    if cursor:
        params["at"], params["id"] = paging.decode(cursor, (datetime, str))
        where.append("(created_at, key_id) < (:at, :id)")
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    rows = await conn.execute(
        text(
            f"SELECT {_COLUMNS} FROM {SCHEMA}.api_keys {clause} ORDER BY created_at DESC, key_id DESC LIMIT :n"
        ),
        params,
    )
    found, after = paging.page(rows.all(), limit, lambda r: (r.created_at, r.key_id))
    return [_info(r) for r in found], after


async def list_keys(conn: AsyncConnection, *, include_revoked: bool = False) -> list[KeyInfo]:
    """Every key (all pages), newest first."""
    out: list[KeyInfo] = []
    cursor: str | None = None
    while True:
        found, cursor = await page_keys(conn, include_revoked=include_revoked, limit=500, cursor=cursor)
        out += found
        if cursor is None:
            return out


async def get(conn: AsyncConnection, key_id: str) -> KeyInfo | None:
    row = (
        await conn.execute(
            text(f"SELECT {_COLUMNS} FROM {SCHEMA}.api_keys WHERE key_id = :id"), {"id": key_id}
        )
    ).first()
    return _info(row) if row else None


async def find_active(conn: AsyncConnection, ref: str) -> KeyInfo | None:
    """An active key by id, or by name."""
    row = (
        await conn.execute(
            text(
                f"""SELECT {_COLUMNS} FROM {SCHEMA}.api_keys
                WHERE (key_id = :r OR name = :r) AND revoked_at IS NULL ORDER BY created_at DESC LIMIT 1"""
            ),
            {"r": ref},
        )
    ).first()
    return _info(row) if row else None


async def revoke(conn: AsyncConnection, key_id: str, *, now: datetime | None = None) -> bool:
    res = await conn.execute(
        text(f"UPDATE {SCHEMA}.api_keys SET revoked_at = :now WHERE key_id = :id AND revoked_at IS NULL"),
        {"id": key_id, "now": now or datetime.now(UTC)},
    )
    return bool(res.rowcount)


async def revoke_all(
    conn: AsyncConnection, *, keep: tuple[str, ...] = (), now: datetime | None = None
) -> tuple[list[KeyInfo], int]:
    """Revoke every active key except the key ids in `keep` (keys in a rotation's grace period included),
    and end the console sessions opened with them, in the caller's transaction. Returns the keys revoked
    and the number of sessions ended."""
    now = now or datetime.now(UTC)
    rows = (
        await conn.execute(
            text(
                f"""UPDATE {SCHEMA}.api_keys SET revoked_at = :now
                WHERE revoked_at IS NULL AND NOT (key_id = ANY(:keep)) RETURNING {_COLUMNS}"""
            ),
            {"now": now, "keep": list(keep)},
        )
    ).all()
    revoked = [_info(r) for r in rows]
    return revoked, await end_sessions(conn, [k.key_id for k in revoked], now=now)


async def end_sessions(conn: AsyncConnection, key_ids: list[str], *, now: datetime | None = None) -> int:
    """End the console sessions opened by signing in with these keys."""
    if not key_ids:
        return 0
    res = await conn.execute(
        text(
            f"""UPDATE {SCHEMA}.sessions SET revoked_at = :now
            WHERE revoked_at IS NULL AND kind = 'api_key' AND subject = ANY(:ids)"""
        ),
        {"now": now or datetime.now(UTC), "ids": key_ids},
    )
    return int(res.rowcount or 0)


async def rotate(
    conn: AsyncConnection,
    key_id: str,
    *,
    rotated_by: str,
    grace: timedelta = timedelta(0),
    now: datetime | None = None,
) -> tuple[KeyInfo, str] | None:
    """Replace a key by a new one with the same name, roles, team and expiry. The old key stops working
    at once, or after `grace` (so the callers using it can be redeployed with the new one)."""
    now = now or datetime.now(UTC)
    old = await get(conn, key_id)
    if old is None or not old.active(now):
        return None
    end = now + grace
    if grace > timedelta(0):
        await conn.execute(
            text(
                f"""UPDATE {SCHEMA}.api_keys SET name = name || '~' || key_id,
                    expires_at = LEAST(COALESCE(expires_at, :end), :end) WHERE key_id = :id"""
            ),
            {"id": key_id, "end": end},
        )
    else:
        await revoke(conn, key_id, now=now)
    # a key still in its grace period is named `name~key_id`: its successor has the name (KeyNameTaken)
    name = old.name.split("~", 1)[0]
    info, plaintext = await create(
        conn,
        name=name,
        roles=old.roles,
        team=old.team,
        expires_at=old.expires_at if old.expires_at and old.expires_at > now else None,
        created_by=rotated_by,
        now=now,
    )
    await conn.execute(
        text(f"UPDATE {SCHEMA}.api_keys SET rotated_from = :old WHERE key_id = :new"),
        {"old": key_id, "new": info.key_id},
    )
    return info, plaintext


async def authenticate(
    conn: AsyncConnection,
    key: str,
    *,
    now: datetime | None = None,
    lockout: LockoutPolicy | None = None,
    service: str = "",
) -> Principal | None:
    """The principal of a valid, active key; None for anything else (malformed, unknown, revoked, expired).
    Raises `KeyLocked` for a key locked after repeated failures (lockout.py), whatever the secret; with a
    `lockout` policy (the gate's), a wrong secret for a known active key counts towards that lock."""
    key_id = parse(key)
    if key_id is None:
        return None
    row = (
        await conn.execute(
            text(
                f"""SELECT k.key_id, k.name, k.roles, k.team, k.key_hash, k.expires_at, k.revoked_at,
                    k.last_used_at, l.locked_at, l.locked_until
                FROM {SCHEMA}.api_keys k LEFT JOIN {SCHEMA}.sign_in_locks l ON l.key_id = k.key_id
                WHERE k.key_id = :id"""
            ),
            {"id": key_id},
        )
    ).first()
    # compare even when the row is missing, so an unknown id costs the same as a wrong secret
    stored = row.key_hash if row else "0" * 64
    matches = hmac.compare_digest(stored, digest(key))
    if row is None:
        return None
    now = now or datetime.now(UTC)
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        return None
    if "service" not in row.roles and locked(row.locked_at, row.locked_until, now):
        LOCKED_ATTEMPTS.inc()
        raise KeyLocked(key_id, row.locked_until)
    if not matches:
        if lockout is not None and "service" not in row.roles:
            await record_failure(
                conn, key_id, lockout, service=service, name=row.name.split("~", 1)[0], now=now
            )
            await conn.commit()
        return None
    if row.last_used_at is None or now - row.last_used_at >= _TOUCH_EVERY:
        await conn.execute(
            text(f"UPDATE {SCHEMA}.api_keys SET last_used_at = :now WHERE key_id = :id"),
            {"id": key_id, "now": now},
        )
        await conn.commit()
    return Principal(
        name=row.name.split("~", 1)[0],
        roles=frozenset(row.roles),
        kind="api_key",
        subject=row.key_id,
        team=row.team,
    )


async def issue_first_admin(
    conn: AsyncConnection,
    *,
    name: str = "admin",
    by: str = "arrears up",
    audit_schema: str | None = None,
) -> tuple[KeyInfo, str]:
    """The operator's admin key for a stack: a new one each time (an existing active key of that name is
    rotated, since its plaintext cannot be shown again). Nothing ships with a default key.

    Only *active* keys are looked at: a key an operator revoked (or one rotated out) is never touched again,
    so it stays revoked across restarts; its replacement is a new key with a new id. Each issue is written
    to `audit_schema`'s audit log (the console's, where key changes are recorded) when given."""
    existing = await find_active(conn, name)
    rotated = await rotate(conn, existing.key_id, rotated_by=by) if existing is not None else None
    info, plaintext = rotated or await create(conn, name=name, roles=("admin",), created_by=by)
    if audit_schema is not None:
        from ..audit.chain import append  # the audit chain imports the auth package

        await append(
            conn,
            audit_schema,
            actor=by,
            role="admin",
            action="api_key.rotate" if rotated else "api_key.create",
            entity="api_key",
            entity_id=existing.key_id if rotated and existing else info.key_id,
            after={"name": name, "roles": list(info.roles), "new_key_id": info.key_id, "start_up": True},
        )
    return info, plaintext
