"""An override = an audit entry + an `overrides` event for the segmenter, in one transaction."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from arrears_shared.auth import Principal
from arrears_shared.events import OverrideAction, OverrideRequested
from arrears_shared.stream.transaction import Transaction
from arrears_shared.vault.cipher import seal_value
from arrears_shared.vault.keys import vault
from sqlalchemy import text

from .. import metrics
from ..audit.service import append
from ..cases.models import SCHEMA
from .models import OverrideAccepted


async def request_override(
    tx: Transaction,
    who: Principal,
    *,
    account_id: str,
    action: OverrideAction,
    now: datetime,
    reason: str = "",
    campaign_id: str | None = None,
    **fields: Any,
) -> OverrideAccepted:
    override_id = str(uuid.uuid4())
    ev = OverrideRequested(
        account_id=account_id,
        override_id=override_id,
        action=action,
        campaign_id=campaign_id,
        reason=reason,
        actor=who.name,
        role=who.role,
        requested_at=now,
        **fields,
    )
    # the operator's reason about an account is stored (and hashed by the chain) sealed with the account's data
    # key: in the entry's `reason` and in the event it records. A campaign's override is about no account (its
    # subject `campaign:<id>` is no one to erase): its reason stays as it is.
    stored = ev.model_dump(mode="json")
    if reason and campaign_id is None:
        key = (await vault().for_writing(tx.conn, [account_id]))[account_id]
        stored["reason"] = seal_value(key, account_id, reason) or reason
    seq = await append(
        tx.conn,
        actor=who.name,
        role=who.role,
        action=f"override.{action}",
        entity="campaign" if campaign_id else "account",
        entity_id=campaign_id or account_id,
        after=stored,
        reason=stored["reason"],
        at=now,
    )
    tx.emit(ev, id=f"override:{override_id}", time=now)
    metrics.OVERRIDES.labels(action, who.role).inc()
    return OverrideAccepted(
        override_id=override_id, action=action, account_id=account_id, audit_seq=seq, requested_at=now
    )


async def add_note(
    tx: Transaction, who: Principal, account_id: str, body: str, case_id: str | None, now: datetime
) -> int:
    """A collector's note, its body sealed with the account's data key both in `notes` and in the audit entry
    (the chain hashes the sealed text: erasing the account's key makes both unreadable, the chain stays
    valid)."""
    key = (await vault().for_writing(tx.conn, [account_id]))[account_id]
    body = seal_value(key, account_id, body) or body
    note_id = (
        await tx.conn.execute(
            text(
                f"""INSERT INTO {SCHEMA}.notes (account_id, case_id, author, body, created_at)
                VALUES (:a, :c, :w, :b, :at) RETURNING note_id"""
            ),
            {"a": account_id, "c": case_id, "w": who.name, "b": body, "at": now},
        )
    ).scalar_one()
    await append(
        tx.conn,
        actor=who.name,
        role=who.role,
        action="note.add",
        entity="account",
        entity_id=account_id,
        after={"note_id": note_id, "case_id": case_id, "body": body},
        at=now,
    )
    return int(note_id)
