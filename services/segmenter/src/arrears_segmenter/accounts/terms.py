"""The terms a debtor agreed to behind a promise hold (pure): an instalment plan and an accepted
settlement offer, both from a `record_promise` override (the portal).

- A plan (`promise_plan`): the promise hold lasts until the plan's last instalment day, and a payment does
  not end it (paying instalment 1 is keeping the plan, not the end of it). A missed instalment is
  escalation's call: it breaks the promise and sends `resume_dunning`, which ends the plan.
- A settlement (`settlement`): the offer's amount by its pay-by day. Payments after the acceptance count
  toward it (`AccountChanged` from source `payment`, its `last_payment_minor`), each once (by `as_of`, so
  a replay adds nothing); once they reach the amount the account is settled for good: the planner's stop
  reason `settled`, whatever the balance left (the business writes the remainder off).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from arrears_shared.events import AccountChanged, OverrideRequested
from arrears_shared.instalments import instalment_day


def plan_of(ev: OverrideRequested) -> dict[str, Any] | None:
    """The plan a `record_promise` carries (None: a one-off promise or a settlement)."""
    if ev.promise_plan_every is None or ev.promise_date is None or ev.settlement_offer_id is not None:
        return None
    count = ev.plan_instalments or 1
    last = instalment_day(ev.promise_date, ev.promise_plan_every, count - 1)
    return {
        "every": ev.promise_plan_every,
        "instalments": count,
        "first": ev.promise_date.isoformat(),
        "last": last.isoformat(),
        "override_id": ev.override_id,
    }


def settlement_of(ev: OverrideRequested) -> dict[str, Any] | None:
    """The settlement a `record_promise` accepts (None: it names no offer)."""
    if ev.settlement_offer_id is None or ev.promise_date is None:
        return None
    return {
        "offer_id": ev.settlement_offer_id,
        "amount_minor": ev.promise_amount_minor or 0,
        "pay_by": ev.promise_date.isoformat(),
        "accepted_at": ev.requested_at.isoformat(),
        "paid_minor": 0,
        "counted_as_of": None,  # `as_of` of the last payment counted toward it
        "settled_at": None,
    }


def plan_last_day(plan: dict[str, Any] | None) -> date | None:
    return date.fromisoformat(plan["last"]) if plan else None


def is_settled(settlement: dict[str, Any] | None) -> bool:
    return bool(settlement and settlement.get("settled_at"))


def keeps_hold(plan: dict[str, Any] | None, settlement: dict[str, Any] | None) -> bool:
    """A payment does not end a promise hold that stands for a plan or an open settlement."""
    return plan is not None or (settlement is not None and not is_settled(settlement))


def count_payment(settlement: dict[str, Any] | None, ev: AccountChanged, now: datetime) -> bool:
    """Count a payment toward an open settlement (changed in place); True when it settles it now."""
    if settlement is None or is_settled(settlement) or ev.source != "payment":
        return False
    amount = ev.last_payment_minor or 0
    if amount <= 0 or ev.as_of <= datetime.fromisoformat(settlement["accepted_at"]):
        return False
    counted = settlement.get("counted_as_of")
    if counted is not None and ev.as_of <= datetime.fromisoformat(counted):
        return False  # already counted (a replay) or older than one that was
    settlement["paid_minor"] = int(settlement.get("paid_minor") or 0) + amount
    settlement["counted_as_of"] = ev.as_of.isoformat()
    if settlement["paid_minor"] >= settlement["amount_minor"]:
        settlement["settled_at"] = now.isoformat()
        return True
    return False
