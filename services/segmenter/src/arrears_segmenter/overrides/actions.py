"""What each manual override does to one account (pure): change the account and say what changed, or
refuse with a reason a person can act on. The service writes the account, re-plans and logs the decision."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from arrears_shared.events import OverrideRequested

from ..accounts import terms
from ..accounts.account import Account, SendNow
from ..accounts.projection import effective_status, hold_for_promise
from ..aging import local_date
from ..preferences.window import set_window
from ..schedule.models import Policy
from ..schedule.planner import next_plan, stop_reason

SUPERVISORS = ("supervisor", "admin", "system")


class Rejected(ValueError):
    """The override cannot apply to this account (logged as a `rejected` decision, nothing changes)."""


@dataclass(frozen=True)
class Applied:
    outcome: str  # updated | ignored (nothing to do)
    summary: str
    step: int | None = None  # the step it was about, for the decision log
    skipped: bool = False  # the step is to be marked skipped


def _until(ev: OverrideRequested, now: datetime) -> datetime | None:
    if ev.until is not None and ev.until <= now:
        raise Rejected(f"`until` {ev.until.isoformat()} is already past")
    return ev.until


def pause(acct: Account, ev: OverrideRequested, policy: Policy, now: datetime, band: str) -> Applied:
    until = _until(ev, now)
    acct.paused_by, acct.manual_pause_until, acct.pause_reason = ev.actor, until, ev.reason or None
    return Applied("updated", f"paused until {until.isoformat()}" if until else "paused until resumed")


def snooze(acct: Account, ev: OverrideRequested, policy: Policy, now: datetime, band: str) -> Applied:
    if ev.until is None:
        raise Rejected("snooze needs `until`")
    return pause(acct, ev, policy, now, band)


def resume(acct: Account, ev: OverrideRequested, policy: Policy, now: datetime, band: str) -> Applied:
    """Ends the holds a person decides on: a pause or snooze, and a dispute. A promise to pay is left to
    run to its date (or to `resume_dunning`)."""
    ended = []
    if acct.paused_by is not None:
        ended.append(f"pause by {acct.paused_by}")
        acct.end_manual_pause()
    if acct.hold == "dispute":
        ended.append("dispute hold")
        acct.hold, acct.status = None, effective_status(acct.source_status, None)
    if not ended:
        return Applied("ignored", "nothing to resume: no pause or dispute hold")
    return Applied("updated", "resumed: ended " + " and ".join(ended))


def _step(
    acct: Account, ev: OverrideRequested, policy: Policy, now: datetime, band: str, *, zero_is_next: bool
) -> int:
    step = ev.step
    if step is None or (step == 0 and zero_is_next):
        nxt = next_plan(acct, policy, now, band=band)
        if step is None and not zero_is_next:
            raise Rejected(f"{ev.action} needs `step`")
        if nxt is None:
            raise Rejected(f"the sequence of cycle {acct.cycle} is complete: no next step")
        step = nxt.step
    if not 1 <= step <= policy.last_step:
        raise Rejected(
            f"step {step} out of range: policy {policy.id} v{policy.version} has 1..{policy.last_step}"
        )
    if step <= acct.last_step:
        raise Rejected(f"step {step} of cycle {acct.cycle} is already done (last step {acct.last_step})")
    return step


def skip_step(acct: Account, ev: OverrideRequested, policy: Policy, now: datetime, band: str) -> Applied:
    step = _step(acct, ev, policy, now, band, zero_is_next=False)
    nxt = next_plan(acct, policy, now, band=band)
    if nxt is None:
        raise Rejected(f"the sequence of cycle {acct.cycle} is complete: no step to skip")
    if nxt.step != step:
        raise Rejected(f"step {step} is not the next step (next: {nxt.step}); skip steps in order")
    acct.last_step, acct.last_step_at = step, now
    if acct.send_now and acct.send_now["step"] <= step:
        acct.send_now = None
    return Applied("updated", f"step {step} of cycle {acct.cycle} skipped", step=step, skipped=True)


def send_now(acct: Account, ev: OverrideRequested, policy: Policy, now: datetime, band: str) -> Applied:
    step = _step(acct, ev, policy, now, band, zero_is_next=True)
    why = stop_reason(acct, policy)
    if why is not None:
        raise Rejected(f"dunning is stopped ({why}); nothing can be sent")
    if ev.gate_override and (ev.role not in SUPERVISORS or not ev.reason.strip()):
        raise Rejected("a compliance gate override needs a supervisor and a reason")
    acct.send_now = SendNow(
        step=step,
        cycle=acct.cycle,
        at=now.isoformat(),
        actor=ev.actor,
        reason=ev.reason,
        gate_override=ev.gate_override,
        approved=ev.role in SUPERVISORS,  # a supervisor's send-now is also the step's approval
    )
    gate = (
        "compliance gate overridden (opt-out and do-not-contact still apply)"
        if ev.gate_override
        else "through the compliance gate"
    )
    return Applied("updated", f"step {step} of cycle {acct.cycle} due now, {gate}", step=step)


def set_channel_preference(
    acct: Account, ev: OverrideRequested, policy: Policy, now: datetime, band: str
) -> Applied:
    """The channel order; with `contact_window` (the debtor's portal) also their quiet times, which only
    narrow the legal window (preferences/). Without it the stored quiet times stay; with `channels_unchanged`
    (the portal, when the debtor changed only quiet times) the stored order stays too."""
    if ev.channels_unchanged:
        summary = "channel order unchanged"
    else:
        order = list(dict.fromkeys(str(c) for c in ev.channels))
        acct.channel_preference = ",".join(order) or None
        summary = f"channels from now on: {', '.join(order)}" if order else "channel preference cleared"
    if ev.contact_window is not None:
        summary += "; " + set_window(acct, ev.contact_window)
    return Applied("updated", summary)


def mark_dispute(acct: Account, ev: OverrideRequested, policy: Policy, now: datetime, band: str) -> Applied:
    if acct.hold == "dispute":
        return Applied("ignored", "already held as disputed")
    acct.hold, acct.status = "dispute", effective_status(acct.source_status, "dispute")
    return Applied("updated", "held as disputed")


def do_not_contact(acct: Account, ev: OverrideRequested, policy: Policy, now: datetime, band: str) -> Applied:
    if not ev.channels:
        acct.do_not_contact = True
        return Applied("updated", "do-not-contact on every channel")
    for c in ev.channels:
        acct.stop_channel(c)
    names = sorted({str(c) for c in ev.channels})
    return Applied("updated", f"do-not-contact on {', '.join(names)}")


def resume_dunning(acct: Account, ev: OverrideRequested, policy: Policy, now: datetime, band: str) -> Applied:
    """A broken promise: end the promise hold and make the next step due now (the gate still applies). The
    plan or unpaid settlement behind it ends too, even when the hold had already lapsed by its date."""
    acct.promise_plan = None  # a missed instalment ends the plan
    if not terms.is_settled(acct.settlement):
        acct.settlement = None  # a settlement not paid by its day is a broken promise like any other
    if acct.hold != "promise":
        return Applied("ignored", "no promise hold in force (already resumed, superseded or never made)")
    acct.hold, acct.status = None, effective_status(acct.source_status, None)
    acct.promise_hold_until = acct.promise_amount_minor = None
    acct.broken_promises += 1
    nxt = next_plan(acct, policy, now, band=band)
    if nxt is None:
        return Applied("updated", "promise hold cleared; the sequence is complete")
    acct.send_now = SendNow(
        step=nxt.step,
        cycle=acct.cycle,
        at=now.isoformat(),
        actor=ev.actor,
        reason=ev.reason,
        gate_override=False,
        approved=False,
    )
    return Applied("updated", f"promise broken: hold cleared, step {nxt.step} due now", step=nxt.step)


def record_promise(acct: Account, ev: OverrideRequested, policy: Policy, now: datetime, band: str) -> Applied:
    """A promise a person took: the same hold as a promise in a reply (until the promised day, in the
    debtor's zone), and a dispute hold is never lifted by it."""
    if ev.promise_date is None:
        raise Rejected("record_promise needs `promise_date`")
    if ev.promise_date < local_date(now, acct.timezone):
        raise Rejected(f"the promised day {ev.promise_date.isoformat()} is already past")
    if acct.hold == "dispute":
        acct.promise_amount_minor = ev.promise_amount_minor
        return Applied("updated", "promise noted; the dispute hold stays until a person resolves it")
    if terms.is_settled(acct.settlement):
        return Applied("ignored", "the account is settled (settlement paid in full): no promise needed")
    plan, settlement = terms.plan_of(ev), terms.settlement_of(ev)
    if settlement is not None and acct.settlement and acct.settlement["offer_id"] == settlement["offer_id"]:
        settlement = acct.settlement  # a replayed acceptance keeps what was paid toward it
    hold_for_promise(acct, ev.promise_date, ev.promise_amount_minor, plan=plan, settlement=settlement)
    if plan is not None:
        return Applied(
            "updated",
            f"instalment plan from {ev.promise_date.isoformat()}: sequence paused until the last "
            f"instalment day {plan['last']}",
        )
    return Applied("updated", f"promise to pay by {ev.promise_date.isoformat()}: sequence paused until then")


def record_contact(acct: Account, ev: OverrideRequested, policy: Policy, now: datetime, band: str) -> Applied:
    """A contact a person made outside the platform. One that reached the customer moves the next automated
    step to at least `contacted_at` + the policy's `manual_contact_gap_hours`, as a timed pause by the person
    who recorded it (shown and ended like any pause: `resume` lifts it). A pause already running longer, or
    an open-ended one, stays as it is; any other outcome (no answer, a message left) changes no plan."""
    if ev.contacted_at is None or ev.contact_channel is None or ev.contact_outcome is None:
        raise Rejected("record_contact needs `contacted_at`, `contact_channel` and `contact_outcome`")
    what = f"{ev.contact_channel} contact ({ev.contact_outcome.replace('_', ' ')}) at {ev.contacted_at.isoformat()}"
    if ev.contact_outcome != "reached":
        return Applied("ignored", f"{what} noted; it did not reach the customer: the plan stays")
    until = ev.contacted_at + timedelta(hours=policy.manual_contact_gap_hours)
    if until <= now:
        return Applied(
            "ignored", f"{what} noted; the {policy.manual_contact_gap_hours:g} h gap after it is over"
        )
    if acct.paused_by is not None and (acct.manual_pause_until is None or acct.manual_pause_until >= until):
        return Applied("ignored", f"{what} noted; already paused past {until.isoformat()}")
    acct.paused_by, acct.manual_pause_until = ev.actor, until
    acct.pause_reason = f"manual {ev.contact_channel} contact reached the customer"
    return Applied("updated", f"{what}: next automated step not before {until.isoformat()}")


ACTIONS: dict[str, Callable[[Account, OverrideRequested, Policy, datetime, str], Applied]] = {
    "pause": pause,
    "snooze": snooze,
    "resume": resume,
    "skip_step": skip_step,
    "send_now": send_now,
    "set_channel_preference": set_channel_preference,
    "mark_dispute": mark_dispute,
    "record_promise": record_promise,
    "do_not_contact": do_not_contact,
    "resume_dunning": resume_dunning,
    "record_contact": record_contact,
}


def apply(acct: Account, ev: OverrideRequested, policy: Policy, now: datetime, *, band: str) -> Applied:
    """Apply one account override to `acct` (unchanged when Rejected is raised). `band`: the account's risk
    band, which decides the next step where the policy restricts steps to bands (`PolicyStep.risk_bands`)."""
    action = ACTIONS.get(ev.action)
    if action is None:
        raise Rejected(f"{ev.action} is not an account override here")
    return action(acct, ev, policy, now, band)
