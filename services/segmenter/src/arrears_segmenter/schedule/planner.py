"""Which policy step is next for an account, and when (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ..accounts.account import CLOSED_STATUSES, Account
from ..aging import days_past_due, moment_dpd_reaches
from .models import Policy, StopCondition


@dataclass(frozen=True)
class Plan:
    step: int
    due_at: datetime


def first_step(policy: Policy, dpd: int, band: str | None = None) -> int | None:
    """The step an account never contacted in its cycle starts with, if it is due already (None: no
    threshold met yet). Only steps that apply to the account's risk `band` count (`PolicyStep.risk_bands`).
    `start_tier: first` (the default): the first such step, so the tone escalates in order however late the
    account is first seen; `by_age`: the highest one whose threshold is met (one notice, not every step)."""
    met = [s.step for s in policy.steps if s.min_days_past_due <= dpd and s.applies(band)]
    if not met:
        return None
    return max(met) if policy.start_tier == "by_age" else met[0]


def plan_next(
    policy: Policy,
    *,
    last_step: int,
    last_step_at: datetime | None,
    due_date: date,
    tz: str | None,
    now: datetime,
    band: str | None = None,
) -> Plan | None:
    """The next step after `last_step` that applies to `band`, and when (None: the sequence is complete).
    A step restricted to other bands is passed over for the one after it, at that step's threshold and its
    interval after the last step sent. When no later step applies to the band, the next step is returned
    anyway: firing decides it with the band of that moment (timers/firing.py skips it if it still does not
    apply). Repeats of the last step go only to its bands."""
    if last_step >= policy.last_step:
        return None
    n = len(policy.steps)
    if last_step >= n:  # repeats of the last step
        last = policy.steps[-1]
        assert last.repeat_every_days is not None
        if not last.applies(band):
            return None
        base = last_step_at or now
        return Plan(last_step + 1, base + timedelta(days=last.repeat_every_days))
    if last_step <= 0:
        step = first_step(policy, days_past_due(due_date, now, tz), band)
        if step is not None:
            return Plan(step, now)
    rest = policy.steps[max(last_step, 0) :]
    nxt = next((s for s in rest if s.applies(band)), None)
    if nxt is None:
        if not rest:
            return None
        # no step left for this band: the next one is armed all the same and decided when it falls due
        # (firing skips it unless the account's band has moved into it by then), so a band that changes
        # later, with no event to re-plan the account, still gets its steps
        nxt = rest[0]
    due = moment_dpd_reaches(due_date, nxt.min_days_past_due, tz)
    if last_step > 0 and last_step_at is not None:
        due = max(due, last_step_at + timedelta(days=nxt.min_interval_days))
    return Plan(nxt.step, due)


def stop_reason(acct: Account, policy: Policy) -> str | None:
    """Why no dunning may run for this account at all (rule id), or None. A promise to pay is a pause, not
    a stop: the planner moves the next step after the promised date instead."""
    if not acct.known or acct.due_date is None:
        return "unknown_account"
    if acct.removed:
        return "account_removed"
    if acct.balance_minor <= 0:
        return "balance_settled"
    if acct.settlement and acct.settlement.get("settled_at"):
        return "settled"  # an accepted settlement offer paid in full: the remainder is written off
    if acct.source_status in CLOSED_STATUSES:
        return f"status_{acct.source_status}"
    if acct.do_not_contact or (acct.channels and all(s.stopped for s in acct.channels.values())):
        return "do_not_contact"
    if acct.hold == "dispute" and policy.stops(StopCondition.DISPUTE):
        return "dispute_pause"
    if acct.paused_by is not None and acct.manual_pause_until is None:
        return "manual_pause"
    if acct.channels and all(s.opted_out for s in acct.channels.values()):
        return "opt_out.all"
    return None


def plan_account(acct: Account, policy: Policy, now: datetime, *, band: str) -> Plan | str:
    """The account's next timer, or the rule id of why it has none. A step a person made due now
    (`send_now`) comes first; holds (promise, a person's timed pause) still move it later. `band`: the
    account's risk band (scores.choice.band_for), which decides the steps restricted to bands."""
    why = stop_reason(acct, policy)
    if why is not None:
        return why
    plan = next_plan(acct, policy, now, band=band)
    if plan is None:
        return "sequence_complete"
    resume = acct.promise_resume_at() if policy.stops(StopCondition.PROMISE_TO_PAY) else None
    if resume is not None and resume > plan.due_at:
        plan = Plan(plan.step, resume)
    until = acct.timed_pause_end()
    if until is not None and until > plan.due_at:
        plan = Plan(plan.step, until)
    return plan


def next_plan(acct: Account, policy: Policy, now: datetime, *, band: str) -> Plan | None:
    """The next step and when, ignoring stops and holds: a pending `send_now`, else the policy's plan for
    the account's risk `band` (None: the sequence is complete, or a placeholder account without a due date
    has nothing to plan)."""
    so = acct.pending_send_now()
    if so is not None and so["step"] <= policy.last_step:
        return Plan(so["step"], datetime.fromisoformat(so["at"]))
    if acct.due_date is None:
        return None
    return plan_next(
        policy,
        last_step=acct.last_step,
        last_step_at=acct.last_step_at,
        due_date=acct.due_date,
        tz=acct.timezone,
        now=now,
        band=band,
    )
