"""Durable timers: schedule, cancel, and fire due timers through the compliance gate."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from arrears_shared import compliance
from arrears_shared.events import Channel, NoticeDue, Tier
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import and_, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..accounts.models import accounts
from ..aging import aging_bucket, days_past_due, local_midnight
from ..deps import Deps
from .models import notices, timers

log = logging.getLogger(__name__)

PRIORITY = {Tier.REMINDER: 10, Tier.FIRM: 20, Tier.FINAL: 30}
FREQUENCY_LOOKBACK = timedelta(days=31)


def notice_id(account_id: str, policy_id: str, version: int, step: int, cycle: int, channel: str) -> str:
    return f"{account_id}:{policy_id}:v{version}:s{step}:c{cycle}:{channel}"


async def record_decision(
    conn: AsyncConnection,
    account_id: str,
    *,
    outcome: str,
    rule_id: str,
    at: datetime,
    reason: str = "",
    step: int | None = None,
    cycle: int | None = None,
    channel: str | None = None,
    notice: str | None = None,
    defer_until: datetime | None = None,
) -> None:
    from ..accounts.models import decisions

    await conn.execute(
        decisions.insert().values(
            account_id=account_id,
            step=step,
            cycle=cycle,
            channel=channel,
            outcome=outcome,
            rule_id=rule_id,
            reason=reason,
            notice_id=notice,
            defer_until=defer_until,
            at=at,
        )
    )


async def schedule(
    conn: AsyncConnection, account_id: str, step: int, cycle: int, due_at: datetime, now: datetime
) -> bool:
    """Make (account, step, cycle) the account's one pending timer. A timer that already fired is never
    re-armed. Returns True if a pending timer now exists for that step."""
    await conn.execute(
        update(timers)
        .where(
            timers.c.account_id == account_id,
            timers.c.state == "pending",
            ~and_(timers.c.step == step, timers.c.cycle == cycle),
        )
        .values(state="cancelled", reason="superseded", updated_at=now)
    )
    ins = insert(timers).values(
        account_id=account_id,
        step=step,
        cycle=cycle,
        due_at=due_at,
        state="pending",
        attempts=0,
        created_at=now,
        updated_at=now,
    )
    stmt = ins.on_conflict_do_update(
        index_elements=[timers.c.account_id, timers.c.step, timers.c.cycle],
        set_={"due_at": ins.excluded.due_at, "state": "pending", "reason": None, "updated_at": now},
        where=timers.c.state.in_(("pending", "cancelled")),
    ).returning(timers.c.id)
    return (await conn.execute(stmt)).first() is not None


async def cancel_pending(conn: AsyncConnection, account_id: str, reason: str, now: datetime) -> int:
    res = await conn.execute(
        update(timers)
        .where(timers.c.account_id == account_id, timers.c.state == "pending")
        .values(state="cancelled", reason=reason, updated_at=now)
        .returning(timers.c.step, timers.c.cycle)
    )
    rows = res.all()
    for step, cycle in rows:
        await record_decision(
            conn, account_id, outcome="cancelled", rule_id=reason, at=now, step=step, cycle=cycle
        )
    return len(rows)


def channel_block(acct: Any, channel: Channel) -> tuple[str, str] | None:
    """Why the account cannot be reached on `channel` at all (rule id, reason), or None if it can."""
    if channel is Channel.SMS:
        address, consent, invalid = acct.phone, acct.sms_consent, acct.sms_invalid
    else:
        address, consent, invalid = acct.email, acct.email_consent, acct.email_invalid
    if not address:
        return f"no_address.{channel}", f"no {channel} address on file"
    if not consent:
        return f"no_consent.{channel}", f"no {channel} consent"
    if invalid:
        return f"invalid_address.{channel}", f"{channel} address failed permanently"
    return None


def promise_resume_at(acct: Any) -> datetime | None:
    if acct.hold == "promise" and acct.paused_until is not None:
        return local_midnight(acct.paused_until + timedelta(days=1), acct.timezone)
    return None


async def fire_due(conn: AsyncConnection, tx: Transaction, deps: Deps, now: datetime) -> int:
    """Handle up to `deps.timer_batch` due timers in the caller's transaction. Replicas share the work via
    SKIP LOCKED (the timer and its account row are locked together). Returns timers handled."""
    from ..accounts.service import ineligible_reason, replan

    rows = (
        await conn.execute(
            select(
                timers.c.id.label("timer_id"),
                timers.c.step.label("timer_step"),
                timers.c.cycle.label("timer_cycle"),
                timers.c.attempts.label("timer_attempts"),
                accounts,
            )
            .join(accounts, accounts.c.account_id == timers.c.account_id)
            .where(timers.c.state == "pending", timers.c.due_at <= now)
            .order_by(timers.c.due_at)
            .limit(deps.timer_batch)
            .with_for_update(skip_locked=True)
        )
    ).all()
    for row in rows:
        await _fire_one(conn, tx, deps, now, row, ineligible_reason, replan)
    return len(rows)


async def _fire_one(
    conn: AsyncConnection,
    tx: Transaction,
    deps: Deps,
    now: datetime,
    row: Any,
    ineligible_reason: Any,
    replan: Any,
) -> None:
    policy = deps.policy
    aid, step_no, cycle = row.account_id, row.timer_step, row.timer_cycle
    why = ineligible_reason(row, now)
    if why is None and (step_no > policy.last_step or cycle != row.cycle):
        why = "stale_timer"
    if why is not None:
        await conn.execute(
            update(timers)
            .where(timers.c.id == row.timer_id)
            .values(state="cancelled", reason=why, updated_at=now)
        )
        await record_decision(conn, aid, outcome="cancelled", rule_id=why, at=now, step=step_no, cycle=cycle)
        return
    resume = promise_resume_at(row)
    if resume is not None and resume > now:
        await _defer(conn, row, resume, "promise_pause", f"paused until {row.paused_until}", now)
        return
    step = policy.get(step_no)
    dpd = days_past_due(row.due_date, now, row.timezone)
    bucket = aging_bucket(dpd, deps.boundaries)
    recent = (
        await conn.execute(
            select(notices.c.channel, notices.c.emitted_at).where(
                notices.c.account_id == aid, notices.c.emitted_at > now - FREQUENCY_LOOKBACK
            )
        )
    ).all()
    opted_out = {
        c for c, flag in ((Channel.SMS, row.sms_opt_out), (Channel.EMAIL, row.email_opt_out)) if flag
    }
    defer_until: list[datetime] = []
    for ch in step.channels:
        nid = notice_id(aid, policy.id, policy.version, step_no, cycle, ch)
        existing = await conn.execute(select(notices.c.notice_id).where(notices.c.notice_id == nid))
        if existing.first() is not None:
            continue
        block = channel_block(row, ch)
        if block is not None and not (ch in opted_out or row.do_not_contact):
            await record_decision(
                conn,
                aid,
                outcome="suppressed",
                rule_id=block[0],
                reason=block[1],
                at=now,
                step=step_no,
                cycle=cycle,
                channel=ch,
            )
            continue
        d = compliance.evaluate(
            now,
            channel=ch,
            timezone=row.timezone,
            country=row.country,
            region=row.region,
            opted_out_channels=opted_out,
            do_not_contact=row.do_not_contact,
            recent_sends=[t for c, t in recent if c == ch],
            rules=deps.rules,
        )
        if d.allowed:
            inserted = (
                await conn.execute(
                    insert(notices)
                    .values(
                        notice_id=nid,
                        account_id=aid,
                        policy_id=policy.id,
                        policy_version=policy.version,
                        step=step_no,
                        cycle=cycle,
                        channel=ch,
                        tier=step.tier,
                        emitted_at=now,
                    )
                    .on_conflict_do_nothing()
                    .returning(notices.c.notice_id)
                )
            ).first()
            if inserted is None:
                continue
            tx.emit(
                NoticeDue(
                    account_id=aid,
                    notice_id=nid,
                    policy_id=policy.id,
                    policy_version=policy.version,
                    step=step_no,
                    cycle=cycle,
                    tier=step.tier,
                    channel=ch,
                    template_id=step.template_id,
                    priority=PRIORITY[step.tier],
                    to=row.phone if ch is Channel.SMS else row.email,
                    customer_name=row.customer_name,
                    balance_minor=row.balance_minor,
                    currency=row.currency,
                    days_past_due=dpd,
                    aging_bucket=bucket,
                    timezone=row.timezone,
                    country=row.country,
                    region=row.region,
                    due_at=now,
                ),
                id=nid,
                time=now,
            )
            await record_decision(
                conn,
                aid,
                outcome="emitted",
                rule_id=d.rule_id,
                reason=d.reason,
                at=now,
                step=step_no,
                cycle=cycle,
                channel=ch,
                notice=nid,
            )
        elif d.defer_until is not None:
            defer_until.append(d.defer_until)
            await record_decision(
                conn,
                aid,
                outcome="deferred",
                rule_id=d.rule_id,
                reason=d.reason,
                at=now,
                step=step_no,
                cycle=cycle,
                channel=ch,
                defer_until=d.defer_until,
            )
        else:
            await record_decision(
                conn,
                aid,
                outcome="suppressed",
                rule_id=d.rule_id,
                reason=d.reason,
                at=now,
                step=step_no,
                cycle=cycle,
                channel=ch,
            )
    if defer_until:
        await conn.execute(
            update(timers)
            .where(timers.c.id == row.timer_id)
            .values(
                due_at=min(defer_until), attempts=row.timer_attempts + 1, reason="deferred", updated_at=now
            )
        )
        return
    emitted = (
        await conn.execute(
            select(func.count())
            .select_from(notices)
            .where(
                notices.c.account_id == aid,
                notices.c.step == step_no,
                notices.c.cycle == cycle,
                notices.c.policy_id == policy.id,
                notices.c.policy_version == policy.version,
            )
        )
    ).scalar_one()
    state = "fired" if emitted else "suppressed"
    await conn.execute(
        update(timers)
        .where(timers.c.id == row.timer_id)
        .values(state=state, reason=None if emitted else "no channel allowed", updated_at=now)
    )
    await conn.execute(
        update(accounts)
        .where(accounts.c.account_id == aid)
        .values(last_step=step_no, last_step_at=now, days_past_due=dpd, aging_bucket=bucket)
    )
    await replan(conn, aid, deps, now)


async def _defer(
    conn: AsyncConnection, row: Any, until: datetime, rule_id: str, reason: str, now: datetime
) -> None:
    await conn.execute(
        update(timers)
        .where(timers.c.id == row.timer_id)
        .values(due_at=until, attempts=row.timer_attempts + 1, reason=rule_id, updated_at=now)
    )
    await record_decision(
        conn,
        row.account_id,
        outcome="deferred",
        rule_id=rule_id,
        reason=reason,
        at=now,
        step=row.timer_step,
        cycle=row.timer_cycle,
        defer_until=until,
    )
