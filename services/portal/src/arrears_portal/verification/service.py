"""Verification before disclosure: the visitor types the last digits of the account's phone. Failures are
counted per account (whichever link they came through) and lock all of its links for a while; the answer to
a wrong guess and to a locked account says nothing about the account."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..accounts.service import Account


class Outcome(StrEnum):
    VERIFIED = "verified"
    WRONG = "wrong"
    LOCKED = "locked"
    UNAVAILABLE = "unavailable"  # no fact to verify against (unknown, removed or erased account)


@dataclass(frozen=True, slots=True)
class Policy:
    max_attempts: int
    window: timedelta
    lockout: timedelta


async def verify(
    conn: AsyncConnection,
    schema: str,
    account: Account | None,
    account_id: str,
    notice_id: str,
    answer: str,
    client: str,
    policy: Policy,
    now: datetime,
) -> Outcome:
    """Check `answer` against the account's fact; record the attempt; lock after too many failures. The
    caller's transaction serialises attempts on one account (row lock on its lockout row)."""
    await conn.execute(
        text(
            f"""INSERT INTO {schema}.lockouts (account_id, locked_at, locked_until, failures)
                VALUES (:a, '-infinity', '-infinity', 0) ON CONFLICT (account_id) DO NOTHING"""
        ),
        {"a": account_id},
    )
    row = (
        await conn.execute(
            text(
                f"SELECT locked_until > :now AS locked FROM {schema}.lockouts WHERE account_id = :a FOR UPDATE"
            ),
            {"a": account_id, "now": now},
        )
    ).one()
    if row.locked:
        return Outcome.LOCKED
    if account is None or account.removed or not account.phone_tail:
        return Outcome.UNAVAILABLE
    given = "".join(ch for ch in answer if ch.isdigit())
    ok = len(given) == len(account.phone_tail) and hmac.compare_digest(given, account.phone_tail)
    await conn.execute(
        text(
            f"""INSERT INTO {schema}.verification_attempts (account_id, notice_id, ok, client, at)
                VALUES (:a, :n, :ok, :c, :now)"""
        ),
        {"a": account_id, "n": notice_id, "ok": ok, "c": client, "now": now},
    )
    if ok:
        return Outcome.VERIFIED
    failures = (
        await conn.execute(
            text(
                f"""SELECT count(*) FROM {schema}.verification_attempts
                     WHERE account_id = :a AND NOT ok AND at > :since
                       AND at > (SELECT locked_at FROM {schema}.lockouts WHERE account_id = :a)"""
            ),
            {"a": account_id, "since": now - policy.window},
        )
    ).scalar_one()
    if failures >= policy.max_attempts:
        await conn.execute(
            text(
                f"""UPDATE {schema}.lockouts SET locked_at = :now, locked_until = :until, failures = :f
                     WHERE account_id = :a"""
            ),
            {"a": account_id, "now": now, "until": now + policy.lockout, "f": failures},
        )
        return Outcome.LOCKED
    return Outcome.WRONG
