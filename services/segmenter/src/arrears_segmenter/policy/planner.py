"""Which policy step is next for an account, and when (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from ..aging import days_past_due, moment_dpd_reaches
from .models import Policy, StopCondition


@dataclass(frozen=True)
class Plan:
    step: int
    due_at: datetime


def first_step(policy: Policy, dpd: int) -> int | None:
    """On an account's first appearance: the highest step whose threshold is already met (one notice, not
    every step at once); None if no threshold is met yet."""
    met = [s.step for s in policy.steps if s.min_days_past_due <= dpd]
    return max(met) if met else None


def plan_next(
    policy: Policy,
    *,
    last_step: int,
    last_step_at: datetime | None,
    due_date: date,
    tz: str | None,
    now: datetime,
) -> Plan | None:
    if last_step >= policy.last_step:
        return None
    if last_step <= 0:
        step = first_step(policy, days_past_due(due_date, now, tz))
        if step is not None:
            return Plan(step, now)
        first = policy.steps[0]
        return Plan(first.step, moment_dpd_reaches(due_date, first.min_days_past_due, tz))
    n = len(policy.steps)
    if last_step >= n:  # repeats of the last step
        last = policy.steps[-1]
        assert last.repeat_every_days is not None
        base = last_step_at or now
        return Plan(last_step + 1, base + timedelta(days=last.repeat_every_days))
    nxt = policy.get(last_step + 1)
    due = moment_dpd_reaches(due_date, nxt.min_days_past_due, tz)
    if last_step_at is not None:
        due = max(due, last_step_at + timedelta(days=nxt.min_interval_days))
    return Plan(nxt.step, due)


def stop_reason(row: Mapping[str, Any], policy: Policy) -> str | None:
    """Why no dunning may run for this account at all (rule id), or None. A promise to pay is a pause, not
    a stop: the planner moves the next step after the promised date instead."""
    from ..accounts.projection import CLOSED_STATUSES

    if not row["known"] or row["due_date"] is None:
        return "unknown_account"
    if row["removed"]:
        return "account_removed"
    if row["balance_minor"] <= 0:
        return "balance_settled"
    if row["source_status"] in CLOSED_STATUSES:
        return f"status_{row['source_status']}"
    if row["do_not_contact"]:
        return "do_not_contact"
    if row["hold"] == "dispute" and policy.stops(StopCondition.DISPUTE):
        return "dispute_pause"
    if row["sms_opt_out"] and row["email_opt_out"]:
        return "opt_out.all"
    return None


def plan_account(row: Mapping[str, Any], policy: Policy, now: datetime) -> Plan | str:
    """The account's next timer, or the rule id of why it has none."""
    from ..accounts.projection import promise_resume_at

    why = stop_reason(row, policy)
    if why is not None:
        return why
    plan = plan_next(
        policy,
        last_step=row["last_step"],
        last_step_at=row["last_step_at"],
        due_date=row["due_date"],
        tz=row["timezone"],
        now=now,
    )
    if plan is None:
        return "sequence_complete"
    resume = promise_resume_at(row) if policy.stops(StopCondition.PROMISE_TO_PAY) else None
    if resume is not None and resume > plan.due_at:
        plan = Plan(plan.step, resume)
    return plan
