"""Apply one `OverrideRequested` event (published by escalation) inside the consumer's transaction.

Every override leaves one decision in the account's log with the actor and reason of the event: `updated`
(applied), `ignored` (nothing to do) or `rejected` (unknown account or campaign, step out of range, ...):
a bad override is logged, never raised, so it cannot block the partition. Campaign-wide overrides (key
`campaign:<id>`) are logged under that key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from arrears_shared.events import OverrideRequested
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import bulk
from ..accounts.handlers import load_locked, save
from ..accounts.models import decisions
from ..accounts.projection import FoldContext, Row, decision, refresh_segment
from ..approvals.service import Verdict, decide
from ..campaigns import service as campaigns
from ..deps import Deps
from ..policy import store
from ..timers.models import timers
from ..timers.planning import sync_timers
from .actions import SUPERVISORS, Applied, Rejected, apply

CAMPAIGN_PREFIX = "campaign:"
CAMPAIGN_ACTIONS = ("pause", "snooze", "resume")


def _note(ev: OverrideRequested, summary: str) -> str:
    return f"{ev.actor}: {summary}" + (f" ({ev.reason})" if ev.reason else "")


def _log(key: str, ev: OverrideRequested, ctx: FoldContext, outcome: str, summary: str, **kw: Any) -> Row:
    return decision({"account_id": key}, ctx, outcome, f"override.{ev.action}", _note(ev, summary), **kw)


async def apply_override(conn: AsyncConnection, ev: OverrideRequested, deps: Deps, now: datetime) -> None:
    ctx = deps.fold_context(now)
    if ev.campaign_id is not None or ev.account_id.startswith(CAMPAIGN_PREFIX):
        out = [await _campaign(conn, ev, ctx)]
    else:
        out = await _account(conn, ev, deps, ctx)
    await bulk.insert(conn, decisions, out)


async def _account(conn: AsyncConnection, ev: OverrideRequested, deps: Deps, ctx: FoldContext) -> list[Row]:
    now, aid = ctx.now, ev.account_id
    row = (await load_locked(conn, [aid])).get(aid)
    if row is None or not row["known"]:
        return [_log(aid, ev, ctx, "rejected", "unknown account")]
    kw = {"cycle": row["cycle"], "step": ev.step}
    if ev.action == "approve_step":
        return await _approve(conn, row, ev, deps, ctx)
    policy = await store.active(conn, deps.policy)
    try:
        applied: Applied = apply(row, ev, policy, now)
    except Rejected as e:
        return [_log(aid, ev, ctx, "rejected", str(e), **kw)]
    refresh_segment(row, ctx)
    await save(conn, [row])
    if applied.skipped:
        await _mark_skipped(conn, aid, applied.step, row["cycle"], ev, now)
    out = [_log(aid, ev, ctx, applied.outcome, applied.summary, cycle=row["cycle"], step=applied.step)]
    # a person's decision replaces any deferral the old plan had (the gate decides again when it fires)
    return out + await sync_timers(conn, [row], policy, now, keep_deferrals=False)


async def _approve(
    conn: AsyncConnection, row: Row, ev: OverrideRequested, deps: Deps, ctx: FoldContext
) -> list[Row]:
    """Release a step held for approval: the approval gate's own code (it logs `approved`)."""
    kw = {"cycle": row["cycle"], "step": ev.step}
    if ev.step is None:
        return [_log(row["account_id"], ev, ctx, "rejected", "approve_step needs `step`", **kw)]
    if ev.role not in SUPERVISORS:
        return [
            _log(row["account_id"], ev, ctx, "rejected", "approving a held step needs a supervisor", **kw)
        ]
    verdict = Verdict(step=ev.step, cycle=row["cycle"], note=ev.reason)
    if not await decide(conn, row["account_id"], verdict, True, deps, ctx.now, ev.actor):
        why = f"no step {ev.step} of cycle {row['cycle']} is held for approval"
        return [_log(row["account_id"], ev, ctx, "rejected", why, **kw)]
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


async def _campaign(conn: AsyncConnection, ev: OverrideRequested, ctx: FoldContext) -> Row:
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
