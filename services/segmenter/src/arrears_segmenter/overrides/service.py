"""Apply one `OverrideRequested` event (published by escalation) inside the consumer's transaction.

Every override leaves one decision in the account's log with the actor and reason of the event: `updated`
(applied), `ignored` (nothing to do) or `rejected` (unknown account or campaign, step out of range, ...):
a bad override is logged, never raised, so it cannot block the partition. Campaign-wide overrides (key
`campaign:<id>`) are logged under that key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from arrears_shared.events import OverrideRequested
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import bulk
from ..accounts.account import Account
from ..accounts.projection import DecisionRow, FoldContext, decision, refresh_segment
from ..accounts.stops import new_stops, publish, stop_state
from ..accounts.store import insert_decisions, load_locked, save
from ..approvals.service import Verdict, decide
from ..campaigns import service as campaigns
from ..deps import Deps
from ..schedule import store
from ..scores.service import current_bands
from ..timers.models import timers
from ..timers.planning import sync_timers
from .actions import SUPERVISORS, Applied, Rejected, apply

CAMPAIGN_PREFIX = "campaign:"
CAMPAIGN_ACTIONS = ("pause", "snooze", "resume")


def _note(ev: OverrideRequested, summary: str) -> str:
    return f"{ev.actor}: {summary}" + (f" ({ev.reason})" if ev.reason else "")


def _log(
    key: str, ev: OverrideRequested, ctx: FoldContext, outcome: str, summary: str, **kw: Any
) -> DecisionRow:
    return decision(key, ctx, outcome, f"override.{ev.action}", _note(ev, summary), **kw)


async def apply_override(tx: Transaction, ev: OverrideRequested, deps: Deps, now: datetime) -> None:
    ctx = deps.fold_context(now)
    if ev.campaign_id is not None or ev.account_id.startswith(CAMPAIGN_PREFIX):
        out = [await _campaign(tx.conn, ev, ctx)]
    else:
        out = await _account(tx, ev, deps, ctx)
    await insert_decisions(tx.conn, out)


async def _account(tx: Transaction, ev: OverrideRequested, deps: Deps, ctx: FoldContext) -> list[DecisionRow]:
    conn, now, aid = tx.conn, ctx.now, ev.account_id
    acct = (await load_locked(conn, [aid])).get(aid)
    if acct is None or not acct.known:
        return [_log(aid, ev, ctx, "rejected", "unknown account")]
    if ev.action == "approve_step":
        return await _approve(conn, acct, ev, deps, ctx)
    policy = await store.active(conn, deps.policy)
    refresh_segment(acct, ctx)  # the rule score of today (days past due), as planning and firing see it
    band = (await current_bands(conn, [acct], now, deps.score_use))[aid]
    before = stop_state(acct, policy)
    try:
        applied: Applied = apply(acct, ev, policy, now, band=band)
    except Rejected as e:
        return [_log(aid, ev, ctx, "rejected", str(e), cycle=acct.cycle, step=ev.step)]
    refresh_segment(acct, ctx)
    publish(tx, new_stops(before, acct, policy, now))
    await save(conn, [acct])
    if applied.skipped:
        await _mark_skipped(conn, aid, applied.step, acct.cycle, ev, now)
    out = [_log(aid, ev, ctx, applied.outcome, applied.summary, cycle=acct.cycle, step=applied.step)]
    # a person's decision replaces any deferral the old plan had (the gate decides again when it fires)
    return out + await sync_timers(
        conn, [acct], policy, now, keep_deferrals=False, scoring=deps.score_use, rules=deps.rules
    )


async def _approve(
    conn: AsyncConnection, acct: Account, ev: OverrideRequested, deps: Deps, ctx: FoldContext
) -> list[DecisionRow]:
    """Release a step held for approval: the approval gate's own code (it logs `approved`)."""
    aid, cycle = acct.account_id, acct.cycle
    if ev.step is None:
        return [_log(aid, ev, ctx, "rejected", "approve_step needs `step`", cycle=cycle, step=ev.step)]
    if ev.role not in SUPERVISORS:
        why = "approving a held step needs a supervisor"
        return [_log(aid, ev, ctx, "rejected", why, cycle=cycle, step=ev.step)]
    verdict = Verdict(step=ev.step, cycle=cycle, note=ev.reason)
    if not await decide(conn, aid, verdict, True, deps, ctx.now, ev.actor):
        why = f"no step {ev.step} of cycle {cycle} is held for approval"
        return [_log(aid, ev, ctx, "rejected", why, cycle=cycle, step=ev.step)]
    return []


async def _mark_skipped(
    conn: AsyncConnection, aid: str, step: int | None, cycle: int, ev: OverrideRequested, now: datetime
) -> None:
    """The skipped step's timer ends as `suppressed` (a row is written if it had none), never to re-arm."""
    assert step is not None
    await bulk.insert(
        conn,
        timers,
        [
            {
                "account_id": aid,
                "step": step,
                "cycle": cycle,
                "due_at": now,
                "state": "suppressed",
                "attempts": 0,
                "reason": "override.skip_step",
                "created_at": now,
                "updated_at": now,
                "approved_by": ev.actor,
                "approved_at": now,
            }
        ],
        conflict=["account_id", "step", "cycle"],
        update=["state", "reason", "updated_at", "approved_by", "approved_at"],
        update_where="t.state IN ('pending', 'held', 'cancelled')",
    )


async def _campaign(conn: AsyncConnection, ev: OverrideRequested, ctx: FoldContext) -> DecisionRow:
    """Pause, snooze or resume a whole campaign: its accounts' steps wait when they fall due (decision
    `deferred`, rule `override.campaign_pause`, on each account) and are woken at once on resume."""
    key, now = ev.account_id, ctx.now
    cid = ev.campaign_id or key.removeprefix(CAMPAIGN_PREFIX)
    if ev.action not in CAMPAIGN_ACTIONS:
        return _log(key, ev, ctx, "rejected", f"{ev.action} cannot apply to a whole campaign")
    current = await campaigns.get(conn, cid)
    if current is None:
        return _log(key, ev, ctx, "rejected", f"unknown campaign {cid}")
    if ev.action == "resume":
        if current.paused_by is None:
            return _log(key, ev, ctx, "ignored", f"campaign {cid} is not paused")
        await campaigns.set_pause(conn, cid, by=None, until=None, reason=None, now=now)
        woken = await conn.execute(
            update(timers)
            .where(timers.c.state == "pending", timers.c.reason == f"campaign_pause:{cid}")
            .values(due_at=now, updated_at=now)
            .returning(timers.c.id)
        )
        return _log(
            key, ev, ctx, "updated", f"campaign {cid} resumed; {len(woken.all())} waiting steps due now"
        )
    if ev.action == "snooze" and ev.until is None:
        return _log(key, ev, ctx, "rejected", "snooze needs `until`")
    if ev.until is not None and ev.until <= now:
        return _log(key, ev, ctx, "rejected", f"`until` {ev.until.isoformat()} is already past")
    await campaigns.set_pause(conn, cid, by=ev.actor, until=ev.until, reason=ev.reason or None, now=now)
    until = f"until {ev.until.isoformat()}" if ev.until else "until resumed"
    return _log(key, ev, ctx, "updated", f"campaign {cid} paused {until}")
