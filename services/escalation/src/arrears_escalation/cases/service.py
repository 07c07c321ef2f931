"""Cases: open (idempotently), close, list; no-response timers."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from arrears_shared import paging
from arrears_shared.auth import Principal
from arrears_shared.events import CaseEscalated
from arrears_shared.stream.transaction import Transaction
from arrears_shared.vault.cipher import is_sealed, open_value, seal_value
from arrears_shared.vault.keys import vault
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import metrics
from ..audit.service import append
from .models import CaseView, cases

CASE_NAMESPACE = uuid.UUID("6f1c2a4e-5b7d-4c1e-9a3f-2d8e0b6c4a11")
NO_RESPONSE = "no_response"


def case_id_for(account_id: str, reason: str, trigger_id: str) -> str:
    """Deterministic: the same trigger can never open a second case, even on replay."""
    return str(uuid.uuid5(CASE_NAMESPACE, f"{account_id}:{reason}:{trigger_id}"))


async def open_case(
    conn: AsyncConnection,
    tx: Transaction,
    *,
    account_id: str,
    reason: str,
    priority: str,
    trigger_id: str,
    detail: str,
    now: datetime,
    rule_id: str | None = None,
    due_at: datetime | None = None,
) -> str | None:
    """Open a case and emit CaseEscalated in the same transaction. Returns the new case id, or None when
    this trigger already opened one or an open case with the same (account, reason) exists."""
    cid = case_id_for(account_id, reason, trigger_id)
    row = (
        await conn.execute(
            insert(cases)
            .values(
                case_id=cid,
                account_id=account_id,
                reason=reason,
                priority=priority,
                status="open",
                opened_at=now,
                detail=detail,
                trigger_id=trigger_id,
                rule_id=rule_id,
                due_at=due_at,
            )
            .on_conflict_do_nothing()  # primary key (same trigger) or the one-open-case-per-reason index
            .returning(cases.c.case_id)
        )
    ).first()
    if row is None:
        return None
    metrics.CASES.labels(reason, priority).inc()
    tx.emit(
        CaseEscalated(
            account_id=account_id,
            case_id=cid,
            reason=reason,  # type: ignore[arg-type]
            priority=priority,  # type: ignore[arg-type]
            detail=detail,
            opened_at=now,
        ),
        id=f"case:{cid}",
        time=now,
    )
    return cid


def _view(r: Any, close_note: str | None) -> CaseView:
    return CaseView(
        case_id=r.case_id,
        account_id=r.account_id,
        reason=r.reason,
        priority=r.priority,
        status=r.status,
        opened_at=r.opened_at,
        closed_at=r.closed_at,
        close_note=close_note,
        detail=r.detail,
        trigger_id=r.trigger_id,
        rule_id=r.rule_id,
        due_at=r.due_at,
    )


async def list_cases(
    conn: AsyncConnection, status: str | None = None, account_id: str | None = None
) -> list[CaseView]:
    """Every matching case, newest first (all pages)."""
    out: list[CaseView] = []
    cursor: str | None = None
    while True:
        rows, cursor = await page_cases(conn, status, account_id, 500, cursor)
        out += rows
        if cursor is None:
            return out


async def page_cases(
    conn: AsyncConnection,
    status: str | None = None,
    account_id: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[CaseView], str | None]:
    """One page, newest first, and the cursor of the next page (None on the last one)."""
    q = paging.keyset(select(cases), (cases.c.opened_at, cases.c.case_id), cursor, limit)
    if status:
        q = q.where(cases.c.status == status)
    if account_id:
        q = q.where(cases.c.account_id == account_id)
    rows, after = paging.page((await conn.execute(q)).all(), limit, lambda r: (r.opened_at, r.case_id))
    return await _views(conn, rows), after


async def _views(conn: AsyncConnection, rows: Sequence[Any]) -> list[CaseView]:
    """The rows as views, each close note opened with its account's key (one key query for the rows)."""
    sealed = {r.account_id for r in rows if is_sealed(r.close_note)}
    keys = await vault().for_reading(conn, sealed) if sealed else {}
    return [_view(r, open_value(keys.get(r.account_id), r.account_id, r.close_note)) for r in rows]


async def get_case(conn: AsyncConnection, case_id: str) -> CaseView | None:
    r = (await conn.execute(select(cases).where(cases.c.case_id == case_id))).first()
    return (await _views(conn, [r]))[0] if r else None


class CaseNotOpen(Exception):
    pass


async def close_case(
    conn: AsyncConnection, case_id: str, note: str, now: datetime, *, who: Principal | None = None
) -> CaseView | None:
    """Close an open case; its note is stored sealed with the account's data key. None if it does not exist;
    raises CaseNotOpen if already closed. With `who`, the closing is audited (the note sealed as stored)."""
    case = (
        await conn.execute(select(cases.c.account_id, cases.c.status).where(cases.c.case_id == case_id))
    ).first()
    if case is None:
        return None
    if case.status != "open":
        raise CaseNotOpen(case_id)
    account_id = case.account_id
    key = (await vault().for_writing(conn, [account_id]))[account_id]
    sealed = seal_value(key, account_id, note)
    r = (
        await conn.execute(
            update(cases)
            .where(cases.c.case_id == case_id, cases.c.status == "open")
            .values(status="closed", closed_at=now, close_note=sealed)
            .returning(*cases.c)
        )
    ).first()
    if r is None:  # closed meanwhile
        raise CaseNotOpen(case_id)
    if who is not None:
        await append(
            conn,
            actor=who.name,
            role=who.role,
            action="case.close",
            entity="case",
            entity_id=case_id,
            before={"status": "open"},
            after={"status": "closed", "note": sealed, "account_id": account_id},
            at=now,
        )
    return _view(r, note)
