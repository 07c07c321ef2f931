"""Which policy step is next for an account, and when (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ..aging import days_past_due, moment_dpd_reaches
from .models import Policy


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
    nxt = policy.get(last_step + 1)
    due = moment_dpd_reaches(due_date, nxt.min_days_past_due, tz)
    if last_step_at is not None:
        due = max(due, last_step_at + timedelta(days=nxt.min_interval_days))
    return Plan(nxt.step, due)
