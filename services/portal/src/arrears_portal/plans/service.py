"""Instalment plans a verified debtor chooses: how many instalments, how often, from which day, within the
policy's limits (`ARREARS_PORTAL_PLAN_*`). The schedule splits the balance into whole minor units that sum
to it exactly (the first instalments carry the remainder, one minor unit each). Choosing a plan is the
platform's own event: a `record_promise` override for the first instalment on its day, with the plan's
cadence (`promise_plan_every`) and count, so the segmenter holds the sequence and confirms the plan, and
escalation tracks it as a promise (kept or broken)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from arrears_shared.instalments import due_dates
from arrears_shared.stream.transaction import Transaction

from ..actions.service import take_action
from ..settings import PortalSettings
from ..verification.sessions import Session

Cadence = Literal["week", "fortnight", "month"]
CADENCES: tuple[Cadence, ...] = ("week", "fortnight", "month")


@dataclass(frozen=True, slots=True)
class PlanPolicy:
    max_instalments: int
    min_instalment_minor: int
    max_term_days: int
    first_within_days: int  # the first instalment: today .. this many days ahead (the promise window)
    cadences: tuple[Cadence, ...]

    @classmethod
    def from_settings(cls, s: PortalSettings) -> PlanPolicy:
        wanted = {c.strip() for c in s.portal_plan_cadences.split(",")}
        return cls(
            max_instalments=s.portal_plan_max_instalments,
            min_instalment_minor=s.portal_plan_min_instalment_minor,
            max_term_days=s.portal_plan_max_term_days,
            first_within_days=s.portal_promise_max_days,
            cadences=tuple(c for c in CADENCES if c in wanted),
        )

    def most_instalments(self, balance_minor: int) -> int:
        """The most instalments this balance allows (each at least the minimum); below 2, no plan."""
        return min(self.max_instalments, balance_minor // self.min_instalment_minor)


@dataclass(frozen=True, slots=True)
class Instalment:
    number: int
    due_on: date
    amount_minor: int


class PlanRefused(ValueError):
    """The plan is outside the policy: `key` names the portal's message, `values` fill it in."""

    def __init__(self, key: str, **values: Any) -> None:
        super().__init__(key)
        self.key, self.values = key, values


def split(balance_minor: int, count: int) -> list[int]:
    """`count` whole amounts summing to `balance_minor`, none more than one minor unit apart."""
    base, rest = divmod(balance_minor, count)
    return [base + (1 if i < rest else 0) for i in range(count)]


def schedule(
    balance_minor: int, count: int, every: str, first: date, today: date, policy: PlanPolicy
) -> list[Instalment]:
    """The plan's instalments, or PlanRefused naming the limit it breaks."""
    if every not in policy.cadences:
        raise PlanRefused("plan_bad_cadence")
    most = policy.most_instalments(balance_minor)
    if most < 2:
        raise PlanRefused("plan_unavailable")
    if not 2 <= count <= most:
        raise PlanRefused("plan_bad_count", most=most)
    latest_first = today + timedelta(days=policy.first_within_days)
    if not today <= first <= latest_first:
        raise PlanRefused("plan_bad_first", last=latest_first.isoformat())
    days = due_dates(first, every, count)  # every: checked against CADENCES above
    last_day = today + timedelta(days=policy.max_term_days)
    if days[-1] > last_day:
        raise PlanRefused("plan_too_long", last=last_day.isoformat())
    return [
        Instalment(i + 1, d, a)
        for i, (d, a) in enumerate(zip(days, split(balance_minor, count), strict=True))
    ]


async def choose(
    tx: Transaction, session: Session, plan: list[Instalment], every: str, currency: str, now: datetime
) -> str:
    """Record the chosen plan: the action row and audit entry keep the whole schedule; the override carries
    the first instalment, the cadence and the count."""
    first = plan[0]
    return await take_action(
        tx,
        session,
        "plan",
        "record_promise",
        now,
        promise_date=first.due_on,
        promise_amount_minor=first.amount_minor,
        promise_plan_every=every,
        plan_instalments=len(plan),
        detail={
            "currency": currency,
            "schedule": [{"due_on": i.due_on.isoformat(), "amount_minor": i.amount_minor} for i in plan],
        },
    )
