"""Console sign-in sessions: an opaque random token in an HttpOnly cookie, stored only as its SHA-256.

A session carries the principal it was opened for (by an API key or an identity-provider sign-in), a CSRF
token that every state-changing request made with the cookie must echo in `X-CSRF-Token` (or a `csrf_token`
form field), and an expiry. Signing out revokes it server-side, so a copied cookie is dead too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .keys import SCHEMA
from .principal import Principal

COOKIE = "arrears_session"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def open_session(
    conn: AsyncConnection, principal: Principal, ttl: timedelta, *, now: datetime | None = None
) -> tuple[str, str]:
    """Returns (session token for the cookie, CSRF token)."""
    now = now or datetime.now(UTC)
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    await conn.execute(
        text(
            f"""INSERT INTO {SCHEMA}.sessions (token_hash, subject, name, kind, roles, team, csrf_token,
                created_at, expires_at)
            VALUES (:h, :sub, :name, :kind, :roles, :team, :csrf, :now, :exp)"""
        ),
        {
            "h": _digest(token),
            "sub": principal.subject,
            "name": principal.name,
            "kind": principal.kind,
            "roles": sorted(principal.roles),
            "team": principal.team,
            "csrf": csrf,
            "now": now,
            "exp": now + ttl,
        },
    )
    # keep the table small: sessions that ended more than a day ago are of no use
    await conn.execute(
        text(f"DELETE FROM {SCHEMA}.sessions WHERE expires_at < :cut"), {"cut": now - timedelta(days=1)}
    )
    return token, csrf


async def session_principal(
    conn: AsyncConnection, token: str, *, now: datetime | None = None
) -> tuple[Principal, str] | None:
    """(principal, csrf token) of a live session, else None."""
    row = (
        await conn.execute(
            text(
                f"""SELECT subject, name, kind, roles, team, csrf_token, expires_at, revoked_at
                FROM {SCHEMA}.sessions WHERE token_hash = :h"""
            ),
            {"h": _digest(token)},
        )
    ).first()
    now = now or datetime.now(UTC)
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    p = Principal(
        name=row.name, roles=frozenset(row.roles), kind="session", subject=row.subject, team=row.team
    )
    return p, row.csrf_token


async def close_session(conn: AsyncConnection, token: str, *, now: datetime | None = None) -> None:
    await conn.execute(
        text(f"UPDATE {SCHEMA}.sessions SET revoked_at = :now WHERE token_hash = :h AND revoked_at IS NULL"),
        {"h": _digest(token), "now": now or datetime.now(UTC)},
    )


def csrf_matches(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
