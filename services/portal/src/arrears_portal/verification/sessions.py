"""A verified visit: a random token in an HttpOnly cookie (only its SHA-256 is stored), one account, a
sliding expiry, and a CSRF token that every form posts back."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

COOKIE = "arrears_portal"


@dataclass(frozen=True, slots=True)
class Session:
    account_id: str
    notice_id: str
    locale: str
    csrf: str
    digest: str

    @property
    def actor(self) -> str:
        """The audit log's actor: the debtor of this visit, by session (no name, no contact detail)."""
        return f"debtor:{self.digest[:12]}"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def open_session(
    conn: AsyncConnection,
    schema: str,
    account_id: str,
    notice_id: str,
    locale: str,
    now: datetime,
    ttl: timedelta,
) -> str:
    token = secrets.token_urlsafe(32)
    await conn.execute(
        text(
            f"""INSERT INTO {schema}.sessions (token_sha256, account_id, notice_id, locale, csrf, created_at,
                   expires_at) VALUES (:d, :a, :n, :l, :c, :now, :exp)"""
        ),
        {
            "d": _digest(token),
            "a": account_id,
            "n": notice_id,
            "l": locale,
            "c": secrets.token_urlsafe(24),
            "now": now,
            "exp": now + ttl,
        },
    )
    return token


async def current(
    conn: AsyncConnection, schema: str, token: str | None, now: datetime, ttl: timedelta
) -> Session | None:
    """The live session of this cookie, its expiry pushed on; None when absent, ended or expired."""
    if not token or len(token) > 100:
        return None
    row = (
        await conn.execute(
            text(
                f"""UPDATE {schema}.sessions SET expires_at = :exp
                     WHERE token_sha256 = :d AND ended_at IS NULL AND expires_at > :now
                 RETURNING account_id, notice_id, locale, csrf, token_sha256"""
            ),
            {"d": _digest(token), "now": now, "exp": now + ttl},
        )
    ).one_or_none()
    return None if row is None else Session(row[0], row[1], row[2], row[3], row[4])


async def end(conn: AsyncConnection, schema: str, token: str, now: datetime) -> None:
    await conn.execute(
        text(f"UPDATE {schema}.sessions SET ended_at = :now WHERE token_sha256 = :d AND ended_at IS NULL"),
        {"d": _digest(token), "now": now},
    )


def csrf_ok(session: Session, given: str) -> bool:
    import hmac

    return bool(given) and hmac.compare_digest(session.csrf.encode(), given.encode())
