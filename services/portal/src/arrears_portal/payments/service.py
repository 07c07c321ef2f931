"""Paying from the portal: the amount check, the idempotency key, and the record of each checkout.

The payment itself is not recorded here: the gateway's signed webhook reaches ingest, which applies it and
publishes `account-changed` (the one payment path of the platform); the segmenter stops or continues the
sequence from there, and this portal's projection shows the new balance. What the portal records is that a
debtor started a checkout: a `pay` row in `portal.actions` and an audit entry, once per gateway session.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from arrears_shared.audit.chain import append
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import text

from ..accounts.service import Account
from ..verification.sessions import Session
from .checkout import CheckoutSession


def amount_problem(account: Account, minor: int | None, min_minor: int) -> str | None:
    """Why `minor` cannot be paid now (an i18n key), or None. A part payment is > 0, at most the balance
    and at least `min_minor`; paying the whole balance is always allowed."""
    if minor is None or minor <= 0:
        return "bad_amount"
    if minor > account.balance_minor:
        return "pay_too_much"
    if minor < min(min_minor, account.balance_minor):
        return "pay_too_little"
    return None


def idempotency_key(session: Session, amount_minor: int, nonce: str) -> str:
    """One gateway session per visit, amount and rendered form: a double click (or a retry) sends the same
    key, so the gateway answers the same session; another amount or a fresh page makes a new one."""
    raw = f"{session.actor}|{session.account_id}|{amount_minor}|{nonce}".encode()
    return "portal-pay-" + hashlib.sha256(raw).hexdigest()[:40]


async def record_checkout(
    tx: Transaction, session: Session, checkout: CheckoutSession, key: str, now: datetime
) -> bool:
    """Record the started checkout and audit it, once per gateway session (False: already recorded)."""
    detail: dict[str, Any] = {
        "checkout_session_id": checkout.id,
        "amount_minor": checkout.amount_total,
        "currency": checkout.currency,
        "idempotency_key": key,
    }
    row = await tx.conn.execute(
        text(
            f"""INSERT INTO {tx.schema}.actions (action_id, account_id, notice_id, kind, detail, at)
                VALUES (:id, :a, :n, 'pay', CAST(:d AS jsonb), :now) ON CONFLICT DO NOTHING RETURNING 1"""
        ),
        {
            "id": f"pay:{checkout.id}",
            "a": session.account_id,
            "n": session.notice_id,
            "d": json.dumps(detail),
            "now": now,
        },
    )
    if row.first() is None:
        return False
    await append(
        tx.conn,
        tx.schema,
        actor=session.actor,
        role="debtor",
        action="portal.pay",
        entity="account",
        entity_id=session.account_id,
        after=detail,
        reason="",
        at=now,
    )
    return True


async def owns_checkout(tx: Transaction, session: Session, checkout_session_id: str) -> dict[str, Any] | None:
    """The recorded checkout if it was started for this visit's account, else None."""
    row = (
        await tx.conn.execute(
            text(
                f"SELECT detail FROM {tx.schema}.actions WHERE action_id = :id AND account_id = :a AND kind = 'pay'"
            ),
            {"id": f"pay:{checkout_session_id}", "a": session.account_id},
        )
    ).one_or_none()
    return dict(row.detail) if row is not None else None
