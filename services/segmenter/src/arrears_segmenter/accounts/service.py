"""Reads over the projection and operator overrides of account flags (plain functions over a connection)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import bulk
from ..aging import aging_bucket, days_past_due
from ..deps import Deps
from ..policy import store
from ..timers.models import timers
from ..timers.planning import sync_timers
from .handlers import load_locked, save
from .models import (
    AccountView,
    DecisionView,
    FlagsUpdate,
    TimerView,
    accounts,
    decisions,
    mask_email,
    mask_phone,
)
from .projection import decision, refresh_segment


async def set_flags(
    conn: AsyncConnection, account_id: str, body: FlagsUpdate, deps: Deps, now: datetime, actor: str
) -> bool:
    """Apply an operator's flag change, log it, and re-plan at once (DNC cancels, clearing it re-arms).
    `actor` is the authenticated principal's name."""
    rows = await load_locked(conn, [account_id])
    row = rows.get(account_id)
    if row is None:
        return False
    ctx = deps.fold_context(now)
    changes = []
    for name in ("complex", "do_not_contact", "risk_override"):
        v = getattr(body, name)
        if v is not None and row[name] != v:
            changes.append(f"{name} {row[name]} -> {v}")
            row[name] = v
    if body.clear_risk_override and row["risk_override"] is not None:
        changes.append(f"risk_override {row['risk_override']} -> None")
        row["risk_override"] = None
    refresh_segment(row, ctx)
    await save(conn, [row])
    out = [
        decision(
            row,
            ctx,
            "updated",
            "override.flags",
            f"{actor}: {', '.join(changes) or 'no change'}" + (f" ({body.reason})" if body.reason else ""),
        )
    ]
    out += await sync_timers(conn, [row], await store.active(conn, deps.policy), now)
    await bulk.insert(conn, decisions, out)
    return True


async def account_view(
    conn: AsyncConnection, account_id: str, deps: Deps, now: datetime
) -> AccountView | None:
    row = (await conn.execute(select(accounts).where(accounts.c.account_id == account_id))).first()
    if row is None:
        return None
    dpd = days_past_due(row.due_date, now, row.timezone) if row.due_date else 0
    trows = (
        await conn.execute(
            select(timers).where(timers.c.account_id == account_id).order_by(timers.c.cycle, timers.c.step)
        )
    ).all()
    return AccountView(
        account_id=row.account_id,
        known=row.known,
        customer_name=row.customer_name,
        phone_masked=mask_phone(row.phone),
        email_masked=mask_email(row.email),
        balance_minor=row.balance_minor,
        currency=row.currency,
        due_date=row.due_date,
        timezone=row.timezone,
        timezone_unknown=row.timezone_unknown,
        country=row.country,
        region=row.region,
        status=row.status,
        hold=row.hold,
        removed=row.removed,
        sms_consent=row.sms_consent,
        email_consent=row.email_consent,
        sms_opt_out=row.sms_opt_out,
        email_opt_out=row.email_opt_out,
        do_not_contact=row.do_not_contact,
        sms_invalid=row.sms_invalid,
        email_invalid=row.email_invalid,
        paused_until=row.paused_until,
        cycle=row.cycle,
        last_step=row.last_step,
        last_step_at=row.last_step_at,
        days_past_due=dpd,
        aging_bucket=aging_bucket(dpd, deps.boundaries).value,
        first_seen_at=row.first_seen_at,
        last_event_at=row.last_event_at,
        complex=row.complex,
        risk_score=row.risk_score,
        risk_override=row.risk_override,
        partial_payments=row.partial_payments,
        broken_promises=row.broken_promises,
        balance_band=row.balance_band,
        history=row.history,
        segment=row.segment,
        paused_by=row.paused_by,
        pause_until=row.pause_until,
        channel_preference=[c for c in (row.channel_preference or "").split(",") if c],
        sms_do_not_contact=row.sms_do_not_contact,
        email_do_not_contact=row.email_do_not_contact,
        send_now_step=(row.send_now or {}).get("step"),
        timers=[
            TimerView(
                step=t.step,
                cycle=t.cycle,
                due_at=t.due_at,
                state=t.state,
                attempts=t.attempts,
                reason=t.reason,
                policy_id=t.policy_id,
                policy_version=t.policy_version,
                approved_by=t.approved_by,
            )
            for t in trows
        ],
    )


async def decision_log(conn: AsyncConnection, account_id: str, limit: int = 500) -> list[DecisionView]:
    rows = (
        await conn.execute(
            select(decisions)
            .where(decisions.c.account_id == account_id)
            .order_by(decisions.c.id)
            .limit(limit)
        )
    ).all()
    return [
        DecisionView(
            id=r.id,
            step=r.step,
            cycle=r.cycle,
            channel=r.channel,
            outcome=r.outcome,
            rule_id=r.rule_id,
            reason=r.reason,
            notice_id=r.notice_id,
            defer_until=r.defer_until,
            at=r.at,
        )
        for r in rows
    ]
