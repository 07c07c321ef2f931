"""Cases: open (idempotently), close, list; no-response timers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from arrears_shared.events import (
    AccountChanged,
    AccountStatus,
    CaseEscalated,
    DeliveryStatus,
    Intent,
    MessageSent,
    ReplyReceived,
    Tier,
)
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..deps import Deps
from .models import CaseView, cases, timers

CASE_NAMESPACE = uuid.UUID("6f1c2a4e-5b7d-4c1e-9a3f-2d8e0b6c4a11")
NO_RESPONSE = "no_response"

# reply intent -> (case reason, priority)
REPLY_CASES: dict[Intent, tuple[str, str]] = {
    Intent.CALLBACK_REQUEST: ("callback_request", "high"),
    Intent.DISPUTE: ("dispute", "normal"),
    Intent.HARDSHIP: ("hardship", "high"),
}


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
            )
            .on_conflict_do_nothing()  # primary key (same trigger) or the one-open-case-per-reason index
            .returning(cases.c.case_id)
        )
    ).first()
    if row is None:
        return None
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


async def cancel_timers(conn: AsyncConnection, account_id: str, reason: str, now: datetime) -> int:
    res = await conn.execute(
        update(timers)
        .where(timers.c.account_id == account_id, timers.c.state == "pending")
        .values(state="cancelled", reason=reason, updated_at=now)
    )
    return res.rowcount or 0


async def on_message_sent(conn: AsyncConnection, ev: MessageSent, deps: Deps, now: datetime) -> None:
    if ev.status is not DeliveryStatus.SENT or ev.tier is not Tier.FINAL:
        return
    await conn.execute(
        insert(timers)
        .values(
            account_id=ev.account_id,
            kind=NO_RESPONSE,
            trigger_id=ev.notice_id,
            due_at=ev.sent_at + deps.no_response_after,
            state="pending",
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
    )


async def on_reply(conn: AsyncConnection, tx: Transaction, ev: ReplyReceived, now: datetime) -> None:
    await cancel_timers(conn, ev.account_id, f"reply:{ev.intent.value}", now)
    spec = REPLY_CASES.get(ev.intent)
    if spec is None:
        return
    reason, priority = spec
    await open_case(
        conn,
        tx,
        account_id=ev.account_id,
        reason=reason,
        priority=priority,
        trigger_id=ev.reply_id,
        detail=f"{ev.intent.value} reply via {ev.channel.value} (confidence {ev.confidence:.2f})",
        now=now,
    )


async def on_account_changed(conn: AsyncConnection, ev: AccountChanged, now: datetime) -> None:
    if (
        ev.change == "removed"
        or ev.balance_minor <= 0
        or ev.status in (AccountStatus.PAID, AccountStatus.CLOSED)
    ):
        await cancel_timers(conn, ev.account_id, "account_settled", now)


async def fire_due(conn: AsyncConnection, tx: Transaction, deps: Deps, now: datetime) -> int:
    """Open a no_response case for every due timer (replicas share via SKIP LOCKED)."""
    rows = (
        await conn.execute(
            select(timers)
            .where(timers.c.state == "pending", timers.c.due_at <= now)
            .order_by(timers.c.due_at)
            .limit(deps.timer_batch)
            .with_for_update(skip_locked=True)
        )
    ).all()
    for t in rows:
        await open_case(
            conn,
            tx,
            account_id=t.account_id,
            reason=NO_RESPONSE,
            priority="normal",
            trigger_id=t.trigger_id,
            detail=f"no reply since the final notice {t.trigger_id}",
            now=now,
        )
        await conn.execute(update(timers).where(timers.c.id == t.id).values(state="fired", updated_at=now))
    return len(rows)


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
    )


async def list_cases(
    conn: AsyncConnection, status: str | None = None, account_id: str | None = None, limit: int = 500
) -> list[CaseView]:
    q = select(cases).order_by(cases.c.opened_at.desc()).limit(limit)
    if status:
        q = q.where(cases.c.status == status)
    if account_id:
        q = q.where(cases.c.account_id == account_id)
    return [_view(r) for r in (await conn.execute(q)).all()]


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
