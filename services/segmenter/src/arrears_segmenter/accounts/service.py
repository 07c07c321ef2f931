"""Account projection: apply account-changed / reply-received / message-sent and keep one timer planned."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from arrears_shared.events import (
    AccountChanged,
    AccountStatus,
    Channel,
    DeliveryStatus,
    Intent,
    MessageSent,
    ReplyReceived,
)
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..aging import aging_bucket, days_past_due, local_date, zone_of
from ..deps import Deps
from ..policy.planner import plan_next
from ..timers.models import timers
from ..timers.service import cancel_pending, record_decision, schedule
from .models import AccountView, DecisionView, TimerView, accounts, decisions, mask_email, mask_phone

log = logging.getLogger(__name__)

CLOSED_STATUSES = {AccountStatus.PAID.value, AccountStatus.CLOSED.value}


def _settled(row: Any) -> bool:
    return bool(row.removed or row.balance_minor <= 0 or row.source_status in CLOSED_STATUSES)


def ineligible_reason(row: Any, now: datetime) -> str | None:
    """Why no dunning may run for this account now (rule id), or None."""
    if not row.known or row.due_date is None:
        return "unknown_account"
    if row.removed:
        return "account_removed"
    if row.balance_minor <= 0:
        return "balance_settled"
    if row.source_status in CLOSED_STATUSES:
        return f"status_{row.source_status}"
    if row.status == AccountStatus.DISPUTE.value:
        return "dispute_pause"
    return None


def effective_status(source_status: str, hold: str | None) -> str:
    if source_status in CLOSED_STATUSES:
        return source_status
    return hold or source_status


async def _placeholder(conn: AsyncConnection, account_id: str, now: datetime) -> None:
    """Make sure a row exists (a reply can arrive before the account): unknown, never dunned."""
    await conn.execute(
        insert(accounts)
        .values(
            account_id=account_id,
            known=False,
            customer_name="",
            balance_minor=0,
            currency="XXX",
            timezone_unknown=True,
            sms_consent=False,
            email_consent=False,
            status="open",
            source_status="open",
            removed=False,
            sms_opt_out=False,
            email_opt_out=False,
            do_not_contact=False,
            sms_invalid=False,
            email_invalid=False,
            cycle=0,
            last_step=0,
            days_past_due=0,
            aging_bucket="current",
            first_seen_at=now,
            last_event_at=now,
        )
        .on_conflict_do_nothing()
    )


async def _locked(conn: AsyncConnection, account_id: str) -> Any:
    return (
        await conn.execute(select(accounts).where(accounts.c.account_id == account_id).with_for_update())
    ).first()


async def replan(conn: AsyncConnection, account_id: str, deps: Deps, now: datetime) -> None:
    """Cancel timers of an account that must not be dunned, otherwise arm its next step."""
    row = (await conn.execute(select(accounts).where(accounts.c.account_id == account_id))).first()
    if row is None:
        return
    why = ineligible_reason(row, now)
    if why is not None:
        await cancel_pending(conn, account_id, why, now)
        return
    plan = plan_next(
        deps.policy,
        last_step=row.last_step,
        last_step_at=row.last_step_at,
        due_date=row.due_date,
        tz=row.timezone,
        now=now,
    )
    if plan is None:
        await cancel_pending(conn, account_id, "sequence_complete", now)
        return
    pending = (
        await conn.execute(
            select(timers.c.due_at).where(
                timers.c.account_id == account_id,
                timers.c.step == plan.step,
                timers.c.cycle == row.cycle,
                timers.c.state == "pending",
            )
        )
    ).first()
    due = plan.due_at
    if pending is not None and pending.due_at > due:
        due = pending.due_at  # keep a deferral (quiet hours, cap, promise) already decided
    armed = await schedule(conn, account_id, plan.step, row.cycle, due, now)
    if armed and (pending is None or pending.due_at != due):
        await record_decision(
            conn,
            account_id,
            outcome="scheduled",
            rule_id=f"policy.{deps.policy.id}.v{deps.policy.version}",
            reason=f"step {plan.step} ({deps.policy.get(plan.step).tier})",
            at=now,
            step=plan.step,
            cycle=row.cycle,
            defer_until=due,
        )


async def apply_account_changed(conn: AsyncConnection, ev: AccountChanged, deps: Deps, now: datetime) -> None:
    await _placeholder(conn, ev.account_id, now)
    prev = await _locked(conn, ev.account_id)
    if prev.known and prev.as_of is not None and ev.as_of < prev.as_of:
        log.info("stale account-changed ignored", extra={"as_of": ev.as_of.isoformat()})
        return
    _, tz_known = zone_of(ev.timezone)
    removed = ev.change == "removed"
    source_status = ev.status.value
    hold = prev.hold
    if ev.source in ("override", "payment") or source_status in CLOSED_STATUSES:
        hold = None  # an operator override or a payment ends a reply-driven hold
    now_active = not removed and ev.balance_minor > 0 and source_status not in CLOSED_STATUSES
    cycle, cycle_due, last_step, last_step_at = (
        prev.cycle,
        prev.cycle_due_date,
        prev.last_step,
        prev.last_step_at,
    )
    if not prev.known:
        cycle, cycle_due, last_step, last_step_at = 0, ev.due_date, 0, None
    elif now_active and (_settled(prev) or ev.due_date != prev.cycle_due_date):
        cycle, cycle_due, last_step, last_step_at = prev.cycle + 1, ev.due_date, 0, None
    dpd = days_past_due(ev.due_date, now, ev.timezone)
    values: dict[str, Any] = {
        "known": True,
        "change": ev.change,
        "source": ev.source,
        "source_row": ev.source_row,
        "customer_name": ev.customer_name,
        "phone": ev.phone,
        "email": ev.email,
        "balance_minor": ev.balance_minor,
        "currency": ev.currency,
        "due_date": ev.due_date,
        "last_payment_date": ev.last_payment_date,
        "last_payment_minor": ev.last_payment_minor,
        "timezone": ev.timezone,
        "timezone_unknown": not tz_known,
        "country": ev.country,
        "region": ev.region,
        "sms_consent": ev.sms_consent,
        "email_consent": ev.email_consent,
        "source_status": source_status,
        "hold": hold,
        "status": effective_status(source_status, hold),
        "removed": removed,
        "content_hash": ev.content_hash,
        "as_of": ev.as_of,
        "cycle": cycle,
        "cycle_due_date": cycle_due,
        "last_step": last_step,
        "last_step_at": last_step_at,
        "days_past_due": dpd,
        "aging_bucket": aging_bucket(dpd, deps.boundaries).value,
        "last_event_at": now,
    }
    if prev.known and ev.phone != prev.phone:
        values["sms_invalid"] = False
    if prev.known and ev.email != prev.email:
        values["email_invalid"] = False
    if hold is None:
        values["paused_until"] = None
    await conn.execute(update(accounts).where(accounts.c.account_id == ev.account_id).values(**values))
    await replan(conn, ev.account_id, deps, now)


async def apply_reply(conn: AsyncConnection, ev: ReplyReceived, deps: Deps, now: datetime) -> None:
    await _placeholder(conn, ev.account_id, now)
    row = await _locked(conn, ev.account_id)
    values: dict[str, Any] = {"last_event_at": now}
    rule = f"reply.{ev.intent.value}"
    reason = ""
    if ev.intent is Intent.OPT_OUT:
        values[f"{ev.channel.value}_opt_out"] = True
        reason = f"{ev.channel.value} opt-out, effective immediately"
    elif ev.intent is Intent.WRONG_NUMBER and ev.channel is Channel.SMS:
        values["sms_invalid"] = True
        reason = "reported wrong number"
    elif ev.intent is Intent.DISPUTE:
        values.update(hold="dispute", status=effective_status(row.source_status, "dispute"))
        reason = "debt disputed: sequence paused"
    elif ev.intent in (Intent.PROMISE_TO_PAY, Intent.PAID_CLAIM):
        until = ev.promise_date or (
            local_date(now, row.timezone) + timedelta(days=deps.paid_claim_pause_days)
        )
        values.update(
            hold="promise",
            status=effective_status(row.source_status, "promise"),
            paused_until=until,
            promise_amount_minor=ev.promise_amount_minor,
        )
        reason = f"sequence paused until {until.isoformat()}"
    else:
        await conn.execute(update(accounts).where(accounts.c.account_id == ev.account_id).values(**values))
        return
    await conn.execute(update(accounts).where(accounts.c.account_id == ev.account_id).values(**values))
    await record_decision(conn, ev.account_id, outcome="updated", rule_id=rule, reason=reason, at=now)
    if ev.intent in (Intent.DISPUTE, Intent.PROMISE_TO_PAY, Intent.PAID_CLAIM):
        if ev.intent is not Intent.DISPUTE:
            resume = _resume_at(values["paused_until"], row.timezone)
            await conn.execute(
                update(timers)
                .where(
                    timers.c.account_id == ev.account_id,
                    timers.c.state == "pending",
                    timers.c.due_at < resume,
                )
                .values(due_at=resume, reason="promise_pause", updated_at=now)
            )
        await replan(conn, ev.account_id, deps, now)


def _resume_at(paused_until: Any, tz: str | None) -> datetime:
    from ..aging import local_midnight

    return local_midnight(paused_until + timedelta(days=1), tz)


async def apply_message_sent(conn: AsyncConnection, ev: MessageSent, deps: Deps, now: datetime) -> None:
    if ev.status is not DeliveryStatus.FAILED or not ev.permanent:
        return
    await _placeholder(conn, ev.account_id, now)
    await _locked(conn, ev.account_id)
    await conn.execute(
        update(accounts)
        .where(accounts.c.account_id == ev.account_id)
        .values(**{f"{ev.channel.value}_invalid": True, "last_event_at": now})
    )
    await record_decision(
        conn,
        ev.account_id,
        outcome="updated",
        rule_id=f"invalid_address.{ev.channel.value}",
        reason=(ev.reason or "permanent delivery failure")[:200],
        at=now,
        channel=ev.channel.value,
        notice=ev.notice_id,
    )


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
        timers=[
            TimerView(
                step=t.step,
                cycle=t.cycle,
                due_at=t.due_at,
                state=t.state,
                attempts=t.attempts,
                reason=t.reason,
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
