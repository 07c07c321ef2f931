"""Keep each account's one active timer in line with its plan, for a whole batch of accounts at once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import bulk
from ..accounts.projection import Row
from ..policy.models import Policy
from ..policy.planner import Plan, plan_account
from .models import timers

ACTIVE = ("pending", "held")


async def sync_timers(
    conn: AsyncConnection,
    rows: Sequence[Row],
    policy: Policy,
    now: datetime,
    *,
    keep_deferrals: bool = True,
) -> list[Row]:
    """Arm, move or cancel the timers of `rows` (locked by the caller). A step that already fired is never
    re-armed; a later due time set by the gate (a deferral) is kept. Returns decision rows."""
    if not rows:
        return []
    ids = [r["account_id"] for r in rows]
    active: dict[str, list[Any]] = {}
    for t in (
        await conn.execute(
            select(
                timers.c.id,
                timers.c.account_id,
                timers.c.step,
                timers.c.cycle,
                timers.c.due_at,
                timers.c.state,
                timers.c.attempts,
                timers.c.policy_version,
            ).where(bulk.in_ids(timers.c.account_id, ids), timers.c.state.in_(ACTIVE))
        )
    ).all():
        active.setdefault(t.account_id, []).append(t)
    cancels: list[Row] = []
    upserts: list[Row] = []
    decisions: list[Row] = []
    for row in rows:
        aid = row["account_id"]
        plan = plan_account(row, policy, now)
        mine = active.get(aid, [])
        if not isinstance(plan, Plan):
            for t in mine:
                cancels.append({"id": t.id, "state": "cancelled", "reason": plan, "updated_at": now})
                decisions.append(_cancelled(aid, plan, t, now))
            continue
        keep = None
        for t in mine:
            if (t.step, t.cycle) == (plan.step, row["cycle"]):
                keep = t
            else:
                cancels.append({"id": t.id, "state": "cancelled", "reason": "superseded", "updated_at": now})
        if keep is not None and keep.state == "held":
            continue  # waiting for a person; approval keeps its place
        due = plan.due_at
        if keep is not None and keep_deferrals and keep.attempts > 0 and keep.due_at > due:
            due = keep.due_at  # the gate already deferred this step (quiet hours, cap): keep it
        if keep is not None and keep.due_at == due and keep.policy_version == policy.version:
            continue
        upserts.append(
            {
                "account_id": aid,
                "step": plan.step,
                "cycle": row["cycle"],
                "due_at": due,
                "state": "pending",
                "attempts": keep.attempts if keep is not None else 0,
                "reason": None,
                "created_at": now,
                "updated_at": now,
                "policy_id": policy.id,
                "policy_version": policy.version,
            }
        )
    await bulk.update(conn, timers, ["id"], cancels, where="t.state IN ('pending', 'held')")
    await bulk.insert(
        conn,
        timers,
        upserts,
        conflict=["account_id", "step", "cycle"],
        update=["due_at", "state", "reason", "updated_at", "policy_id", "policy_version"],
        update_where="t.state IN ('pending', 'cancelled')",
    )
    return decisions


def _cancelled(aid: str, rule: str, t: Any, now: datetime) -> Row:
    return {
        "account_id": aid,
        "step": t.step,
        "cycle": t.cycle,
        "channel": None,
        "outcome": "cancelled",
        "rule_id": rule,
        "reason": "",
        "notice_id": None,
        "defer_until": None,
        "at": now,
    }
