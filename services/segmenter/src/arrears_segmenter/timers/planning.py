"""Keep each account's one active timer in line with its plan, for a whole batch of accounts at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from arrears_shared.compliance import RuleSet
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import bulk
from ..accounts.account import Account
from ..preferences.window import earliest
from ..schedule.models import Policy
from ..schedule.planner import Plan, plan_account
from ..scores.choice import ScoreUse, at_best_hour, band_for, fresh_score
from ..scores.models import Score
from ..scores.service import latest_scores
from .models import timers

ACTIVE = ("pending", "held")

TimerRow = dict[str, Any]  # a row (or the changed columns of a row) of segmenter.timers


@dataclass
class _Changes:
    """What re-planning a batch writes: timers to cancel, timers to arm or move, decisions to log."""

    cancels: list[TimerRow] = field(default_factory=list)
    upserts: list[TimerRow] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)


async def sync_timers(
    conn: AsyncConnection,
    accts: Sequence[Account],
    policy: Policy,
    now: datetime,
    *,
    scoring: ScoreUse | None,
    rules: RuleSet | None,
    keep_deferrals: bool = True,
) -> list[dict[str, Any]]:
    """Arm, move or cancel the timers of `accts` (locked by the caller). A step that already fired is never
    re-armed; a later due time set by the gate (a deferral) is kept. With `scoring`, a step is placed at the
    best hour of the account's fresh model score (scores.choice). With `rules`, a step of an account with
    the debtor's own quiet times is then moved to the first moment inside both those and the legal window
    (preferences/): the debtor's wish wins over the model's hour. Both are required, so that no caller can
    forget them (a daily re-scoring once re-planned without `rules` and undid every quiet-time placement);
    None only where there is no such thing. Returns decision rows."""
    if not accts:
        return []
    ids = [a.account_id for a in accts]
    active = await _active_timers(conn, ids)
    scores = await latest_scores(conn, ids) if scoring is not None else {}
    changes = _Changes()
    for acct in accts:
        mine = active.get(acct.account_id, [])
        score = fresh_score(scores.get(acct.account_id), now, scoring) if scoring is not None else None
        plan = plan_account(acct, policy, now, band=band_for(acct, score))
        if isinstance(plan, Plan) and score is not None and scoring is not None:
            plan = _at_best_hour(acct, plan, score, scoring, now)
        if isinstance(plan, Plan) and rules is not None and acct.contact_window:
            plan = Plan(plan.step, earliest(acct, plan.due_at, now, rules))
        if isinstance(plan, Plan):
            _follow_plan(changes, acct, plan, mine, policy, now, keep_deferrals)
        else:
            _stop(changes, acct.account_id, plan, mine, now)
    await _write(conn, changes)
    return changes.decisions


def _at_best_hour(acct: Account, plan: Plan, score: Score | None, use: ScoreUse, now: datetime) -> Plan:
    """The plan moved to the fresh score's best hour. A step a person made due now stays where it is, and
    the debtor's own quiet times (preferences/) win over the model: such an account is not moved."""
    if score is None or acct.pending_send_now() is not None or getattr(acct, "contact_window", None):
        return plan
    return Plan(plan.step, at_best_hour(plan.due_at, acct, score, use, now))


async def _active_timers(conn: AsyncConnection, ids: list[str]) -> dict[str, list[Any]]:
    """The pending or held timers of these accounts, by account id."""
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
    return active


def _stop(changes: _Changes, aid: str, rule: str, mine: list[Any], now: datetime) -> None:
    """No step is planned (`rule` says why): cancel every active timer and log each."""
    for t in mine:
        changes.cancels.append({"id": t.id, "state": "cancelled", "reason": rule, "updated_at": now})
        changes.decisions.append(_cancelled(aid, rule, t, now))


def _follow_plan(
    changes: _Changes,
    acct: Account,
    plan: Plan,
    mine: list[Any],
    policy: Policy,
    now: datetime,
    keep_deferrals: bool,
) -> None:
    """Keep the timer of the planned step (cancel any other), and arm it or move it to the plan's time."""
    keep = None
    for t in mine:
        if (t.step, t.cycle) == (plan.step, acct.cycle):
            keep = t
        else:
            changes.cancels.append(
                {"id": t.id, "state": "cancelled", "reason": "superseded", "updated_at": now}
            )
    if keep is not None and keep.state == "held":
        return  # waiting for a person; approval keeps its place
    due = plan.due_at
    if keep is not None and keep_deferrals and keep.attempts > 0 and keep.due_at > due:
        due = keep.due_at  # the gate already deferred this step (quiet hours, cap): keep it
    if keep is not None and keep.due_at == due and keep.policy_version == policy.version:
        return
    changes.upserts.append(
        {
            "account_id": acct.account_id,
            "step": plan.step,
            "cycle": acct.cycle,
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


async def _write(conn: AsyncConnection, changes: _Changes) -> None:
    await bulk.update(conn, timers, ["id"], changes.cancels, where="t.state IN ('pending', 'held')")
    await bulk.insert(
        conn,
        timers,
        changes.upserts,
        conflict=["account_id", "step", "cycle"],
        update=["due_at", "state", "reason", "updated_at", "policy_id", "policy_version"],
        update_where="t.state IN ('pending', 'cancelled')",
    )


def _cancelled(aid: str, rule: str, t: Any, now: datetime) -> dict[str, Any]:
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
