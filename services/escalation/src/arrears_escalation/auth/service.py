"""API keys (stored as SHA-256 hashes) and roles viewer < agent < supervisor < admin.

A key is `ark_` + 32 random bytes (URL-safe base64): high entropy, so one SHA-256 is the right hash (a slow
password hash would only slow every request). The plaintext is shown once, when the key is created."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..cases.models import SCHEMA

Role = Literal["viewer", "agent", "supervisor", "admin"]
RANK: dict[str, int] = {"viewer": 0, "agent": 1, "supervisor": 2, "admin": 3}


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    team: str | None = None

    def at_least(self, role: Role) -> bool:
        return RANK[self.role] >= RANK[role]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "ark_" + secrets.token_urlsafe(32)


async def upsert_key(
    conn: AsyncConnection, name: str, role: Role, key_hash: str, team: str | None = None
) -> None:
    await conn.execute(
        text(
            f"""INSERT INTO {SCHEMA}.api_keys (key_id, name, role, team, key_hash)
            VALUES (:id, :n, :r, :t, :h)
            ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role, team = EXCLUDED.team,
                key_hash = EXCLUDED.key_hash, revoked_at = NULL"""
        ),
        {"id": secrets.token_hex(8), "n": name, "r": role, "t": team, "h": key_hash},
    )


async def revoke_key(conn: AsyncConnection, name: str) -> bool:
    res = await conn.execute(
        text(f"UPDATE {SCHEMA}.api_keys SET revoked_at = :at WHERE name = :n AND revoked_at IS NULL"),
        {"n": name, "at": datetime.now(UTC)},
    )
    return bool(res.rowcount)


async def authenticate(conn: AsyncConnection, key: str) -> Principal | None:
    row = (
        await conn.execute(
            text(
                f"SELECT name, role, team FROM {SCHEMA}.api_keys WHERE key_hash = :h AND revoked_at IS NULL"
            ),
            {"h": hash_key(key)},
        )
    ).first()
    return Principal(row.name, row.role, row.team) if row else None


def parse_bootstrap(spec: str) -> list[tuple[str, Role, str]]:
    """`name:role:sha256hex,...` -> [(name, role, hash)]; raises ValueError on a malformed entry."""
    out: list[tuple[str, Role, str]] = []
    for item in (x.strip() for x in spec.split(",") if x.strip()):
        parts = item.split(":")
        if len(parts) != 3 or parts[1] not in RANK or len(parts[2]) != 64:
            raise ValueError(f"ARREARS_ESCALATION_API_KEYS entry {parts[0]!r} is not name:role:sha256hex")
        out.append((parts[0], parts[1], parts[2].lower()))  # type: ignore[arg-type]
    return out
