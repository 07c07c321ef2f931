"""Cases: open (idempotently), close, list; no-response timers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from arrears_shared import paging
from arrears_shared.events import CaseEscalated
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import metrics
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


def _view(r: Any) -> CaseView:
    return CaseView(
        case_id=r.case_id,
        account_id=r.account_id,
        reason=r.reason,
        priority=r.priority,
        status=r.status,
        opened_at=r.opened_at,
        closed_at=r.closed_at,
        close_note=r.close_note,
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
    return [_view(r) for r in rows], after


async def get_case(conn: AsyncConnection, case_id: str) -> CaseView | None:
    r = (await conn.execute(select(cases).where(cases.c.case_id == case_id))).first()
    return _view(r) if r else None


class CaseNotOpen(Exception):
    pass


async def close_case(conn: AsyncConnection, case_id: str, note: str, now: datetime) -> CaseView | None:
    """Close an open case. None if it does not exist; raises CaseNotOpen if already closed."""
    r = (
        await conn.execute(
            update(cases)
            .where(cases.c.case_id == case_id, cases.c.status == "open")
            .values(status="closed", closed_at=now, close_note=note)
            .returning(*cases.c)
        )
    ).first()
    if r is not None:
        return _view(r)
    if await get_case(conn, case_id) is None:
        return None
    raise CaseNotOpen(case_id)
