"""Reads over the projection and operator overrides of account flags (plain functions over a connection)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from arrears_shared import channels, paging
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..aging import aging_bucket, days_past_due
from ..deps import Deps
from ..preferences.window import debtor_window
from ..schedule import store
from ..timers.models import timers
from ..timers.planning import sync_timers
from .account import Account
from .models import AccountView, ChannelView, DecisionView, FlagsUpdate, TimerView, decisions, mask_address
from .projection import decision, refresh_segment
from .stops import new_stops, publish, stop_state
from .store import insert_decisions, load, load_locked, open_reasons, save

FLAGS = ("complex", "do_not_contact", "risk_override")


async def set_flags(
    tx: Transaction, account_id: str, body: FlagsUpdate, deps: Deps, now: datetime, actor: str
) -> bool:
    """Apply an operator's flag change, log it, and re-plan at once (DNC cancels, clearing it re-arms; a
    do-not-contact also withdraws what the dispatchers hold queued: accounts/stops.py). `actor` is the
    authenticated principal's name."""
    conn = tx.conn
    acct = (await load_locked(conn, [account_id])).get(account_id)
    if acct is None:
        return False
    ctx = deps.fold_context(now)
    policy = await store.active(conn, deps.policy)
    before = stop_state(acct, policy)
    changes = []
    for name in FLAGS:
        v = getattr(body, name)
        if v is not None and getattr(acct, name) != v:
            changes.append(f"{name} {getattr(acct, name)} -> {v}")
            setattr(acct, name, v)
    if body.clear_risk_override and acct.risk_override is not None:
        changes.append(f"risk_override {acct.risk_override} -> None")
        acct.risk_override = None
    refresh_segment(acct, ctx)
    await save(conn, [acct])
    publish(tx, new_stops(before, acct, policy, now))
    note = f"{actor}: {', '.join(changes) or 'no change'}" + (f" ({body.reason})" if body.reason else "")
    out = [decision(account_id, ctx, "updated", "override.flags", note)]
    out += await sync_timers(conn, [acct], policy, now, scoring=deps.score_use, rules=deps.rules)
    await insert_decisions(conn, out)
    return True


async def account_view(
    conn: AsyncConnection, account_id: str, deps: Deps, now: datetime
) -> AccountView | None:
    acct = await load(conn, account_id)
    if acct is None:
        return None
    trows = (
        await conn.execute(
            select(timers).where(timers.c.account_id == account_id).order_by(timers.c.cycle, timers.c.step)
        )
    ).all()
    return _view(acct, trows, deps, now)


def _channel_views(acct: Account) -> list[ChannelView]:
    """The account's channels in registry order (a channel no longer installed last, by name)."""
    order = {name: i for i, name in enumerate(channels.names())}
    out = []
    for name in sorted(acct.channels, key=lambda n: (order.get(n, len(order)), n)):
        s = acct.channels[name]
        spec = channels.registered().get(name)
        out.append(
            ChannelView(
                channel=name,
                label=spec.label if spec else name,
                address_masked=mask_address(spec.address_kind if spec else "phone", acct.address(name)),
                consent=s.consent,
                opted_out=s.opted_out,
                invalid=s.invalid,
                stopped=s.stopped,
            )
        )
    return out


def _view(acct: Account, trows: Sequence[Any], deps: Deps, now: datetime) -> AccountView:
    """The API view: contact details masked, days past due and bucket as of `now`, every timer."""
    dpd = days_past_due(acct.due_date, now, acct.timezone) if acct.due_date else 0
    return AccountView(
        account_id=acct.account_id,
        known=acct.known,
        customer_name=acct.customer_name,
        balance_minor=acct.balance_minor,
        currency=acct.currency,
        due_date=acct.due_date,
        timezone=acct.timezone,
        timezone_unknown=acct.timezone_unknown,
        country=acct.country,
        region=acct.region,
        status=acct.status,
        hold=acct.hold,
        removed=acct.removed,
        do_not_contact=acct.do_not_contact,
        channels=_channel_views(acct),
        promise_hold_until=acct.promise_hold_until,
        cycle=acct.cycle,
        last_step=acct.last_step,
        last_step_at=acct.last_step_at,
        days_past_due=dpd,
        aging_bucket=aging_bucket(dpd, deps.boundaries).value,
        first_seen_at=acct.first_seen_at,
        last_event_at=acct.last_event_at,
        complex=acct.complex,
        risk_score=acct.risk_score,
        risk_override=acct.risk_override,
        partial_payments=acct.partial_payments,
        broken_promises=acct.broken_promises,
        balance_band=acct.balance_band,
        history=acct.history,
        segment=acct.segment,
        paused_by=acct.paused_by,
        manual_pause_until=acct.manual_pause_until,
        channel_preference=[c for c in (acct.channel_preference or "").split(",") if c],
        contact_window=debtor_window(acct),
        send_now_step=acct.send_now["step"] if acct.send_now else None,
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


async def decision_log(
    conn: AsyncConnection, account_id: str, limit: int = 200, cursor: str | None = None
) -> tuple[list[DecisionView], str | None]:
    """One page of the account's decisions, oldest first, and the cursor of the next page."""
    q = paging.keyset(
        select(decisions).where(decisions.c.account_id == account_id),
        (decisions.c.id,),
        cursor,
        limit,
        (False,),
    )
    rows, after = paging.page((await conn.execute(q)).all(), limit, lambda r: (r.id,))
    reasons = await open_reasons(conn, rows)
    return [
        DecisionView(
            id=r.id,
            step=r.step,
            cycle=r.cycle,
            channel=r.channel,
            outcome=r.outcome,
            rule_id=r.rule_id,
            reason=reason,
            notice_id=r.notice_id,
            defer_until=r.defer_until,
            at=r.at,
        )
        for r, reason in zip(rows, reasons, strict=True)
    ], after
