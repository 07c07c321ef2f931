"""What a verified debtor does, as the events the platform already reacts to: a promise to pay is the
`record_promise` override a collector records after a call, a dispute `mark_dispute`, an opt-out of a channel
`do_not_contact` for that channel. Each is one transaction: the action row, the audit entry (actor = the
debtor's visit, note sealed with the account's key) and the override in the outbox."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime
from typing import Any

from arrears_shared.audit.chain import append
from arrears_shared.events import OverrideAction, OverrideRequested
from arrears_shared.stream.transaction import Transaction
from arrears_shared.vault.cipher import seal_value
from arrears_shared.vault.keys import vault
from prometheus_client import Counter
from sqlalchemy import text

from ..verification.sessions import Session

ACTOR_PREFIX = "portal:"  # OverrideRequested.actor: "portal:debtor:<visit>"; role "system" (no debtor role)
ACTIONS = Counter("arrears_portal_actions_total", "Debtor actions taken in the portal", ["kind"])


async def take_action(
    tx: Transaction,
    session: Session,
    kind: str,
    action: OverrideAction,
    now: datetime,
    *,
    note: str = "",
    detail: dict[str, Any] | None = None,
    **fields: Any,
) -> str:
    """`detail`: what else the action row and the audit entry keep beside the event (a plan's schedule)."""
    override_id = str(uuid.uuid4())
    ev = OverrideRequested(
        account_id=session.account_id,
        override_id=override_id,
        action=action,
        reason=note,
        actor=ACTOR_PREFIX + session.actor,
        role="system",
        requested_at=now,
        **fields,
    )
    stored = ev.model_dump(mode="json") | (detail or {})
    if note:
        key = (await vault().for_writing(tx.conn, [session.account_id]))[session.account_id]
        stored["reason"] = seal_value(key, session.account_id, note) or note
    await tx.conn.execute(
        text(
            f"""INSERT INTO {tx.schema}.actions (action_id, account_id, notice_id, kind, detail, at)
                VALUES (:id, :a, :n, :k, CAST(:d AS jsonb), :now)"""
        ),
        {
            "id": override_id,
            "a": session.account_id,
            "n": session.notice_id,
            "k": kind,
            "d": json.dumps(stored),
            "now": now,
        },
    )
    await append(
        tx.conn,
        tx.schema,
        actor=session.actor,
        role="debtor",
        action=f"portal.{kind}",
        entity="account",
        entity_id=session.account_id,
        after=stored,
        reason=stored["reason"],
        at=now,
    )
    tx.emit(ev, id=f"override:{override_id}", time=now)
    ACTIONS.labels(kind).inc()
    return override_id


async def promise(
    tx: Transaction, session: Session, on: date, amount_minor: int | None, now: datetime
) -> str:
    return await take_action(
        tx, session, "promise", "record_promise", now, promise_date=on, promise_amount_minor=amount_minor
    )


async def dispute(tx: Transaction, session: Session, note: str, now: datetime) -> str:
    return await take_action(tx, session, "dispute", "mark_dispute", now, note=note)


async def opt_out(tx: Transaction, session: Session, channel: str, now: datetime) -> str:
    return await take_action(tx, session, "opt_out", "do_not_contact", now, channels=[channel])
