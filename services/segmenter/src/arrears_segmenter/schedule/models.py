"""Dunning policy as versioned data (YAML -> pydantic), with errors a person can act on."""

from __future__ import annotations

from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from arrears_shared import channels
from arrears_shared.events import Currency, RiskBand, Tier
from arrears_shared.money import RateTable, note_unpriced
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)


class StopCondition(StrEnum):
    PAID = "paid"
    PROMISE_TO_PAY = "promise_to_pay"
    DISPUTE = "dispute"
    OPT_OUT = "opt_out"
    DO_NOT_CONTACT = "do_not_contact"


MANDATORY_STOPS = {StopCondition.OPT_OUT, StopCondition.DO_NOT_CONTACT, StopCondition.PAID}


class PolicyStep(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    step: int = Field(ge=1)
    tier: Tier
    min_days_past_due: int = Field(ge=0, description="Step falls due once days past due reach this")
    min_interval_days: int = Field(0, ge=0, description="Days since the previous step was sent")
    channels: list[str] = Field(
        min_length=1, description="Channel order: names from the channel registry (sms, email, whatsapp, ...)"
    )
    channel_mode: Literal["all", "fallback"] = Field(
        "all",
        description="all: send on every allowed channel; fallback: the first allowed channel, the rest "
        "are the segmenter's fallback when a notice fails permanently",
    )
    template_id: str = Field(min_length=1)
    repeat_every_days: int | None = Field(
        None, ge=1, description="Last step only: repeat it every N days until a stop condition holds"
    )
    max_repeats: int = Field(0, ge=0, le=52, description="How many repeats of the last step at most")
    risk_bands: list[RiskBand] | None = Field(
        None,
        description="Only accounts in these risk bands get this step; the others skip it (the next step "
        "that applies to them follows). The band is the one campaigns select on: the model's while the "
        "account's score is fresh, else the rule score's; a pinned risk score wins. Omitted: every account",
    )

    def applies(self, band: str | None) -> bool:
        """Does this step go to an account in `band` (None: band unknown, only unrestricted steps)?"""
        return self.risk_bands is None or (band is not None and band in self.risk_bands)

    @model_validator(mode="after")
    def _channels_unique(self) -> PolicyStep:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must not repeat")
        unknown = [c for c in self.channels if c not in channels.registered()]
        if unknown:
            raise ValueError(f"unknown channels {unknown}; installed: {list(channels.registered())}")
        if (self.repeat_every_days is None) != (self.max_repeats == 0):
            raise ValueError("repeat_every_days and max_repeats go together")
        if self.risk_bands is not None and (
            not self.risk_bands or len(set(self.risk_bands)) != len(self.risk_bands)
        ):
            raise ValueError("risk_bands: at least one band, none repeated (omit it for every account)")
        return self


class Approval(BaseModel):
    """Manual override (seed 001): these accounts wait for a person to approve each step.

    The balance threshold is money in one stated currency; each account's balance is converted to the
    reporting currency (`arrears_shared.money`) before the comparison, and so is the threshold when `currency`
    is not the reporting currency. A balance in a currency without a rate is held (`approval.unpriced_currency`):
    a person looks before anything is sent for an amount nobody could value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    balance_above_minor: int | None = Field(
        None,
        ge=0,
        description="Accounts whose balance exceeds this need approval: minor units of `currency`",
    )
    currency: Currency | None = Field(
        None,
        description="Currency of balance_above_minor; omitted: the reporting currency of the rates table",
    )
    complex_accounts: bool = Field(True, description="Accounts flagged complex need approval")


MANUAL_CONTACT_GAP_HOURS = 24.0
StartTier = Literal["first", "by_age"]
AfterLastStep = Literal["escalate", "stop"]
# fields left out of the stored body at their default: a replica from before them (`extra="forbid"`) still
# reads the active policy during a rolling upgrade
OMITTED_AT_DEFAULT: dict[str, object] = {
    "manual_contact_gap_hours": MANUAL_CONTACT_GAP_HOURS,
    "start_tier": "first",
    "after_last_step": "escalate",
}


class Policy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_-]+$")
    version: int = Field(ge=1)
    description: str = ""
    steps: list[PolicyStep] = Field(min_length=1)
    stop_conditions: list[StopCondition] = Field(default_factory=lambda: list(StopCondition))
    approval: Approval = Field(default_factory=Approval)
    manual_contact_gap_hours: float = Field(
        MANUAL_CONTACT_GAP_HOURS,
        ge=0,
        le=24 * 90,
        description="After a person's contact that reached the customer (a call, a visit: `record_contact`), "
        "the next automated step waits at least this long after it",
    )
    start_tier: StartTier = Field(
        "first",
        description="Where an account never contacted in its cycle starts: `first` = step 1, then each step "
        "in order (its interval after the previous one), however many days past due it is when first seen; "
        "`by_age` = straight at the highest step its days past due already reach (one notice, not every step)",
    )
    after_last_step: AfterLastStep = Field(
        "escalate",
        description="What follows the last step: `escalate` = people (escalation's no_response case after a "
        "final notice); `stop` = nothing. A notice calls itself final (tier `final`) only when this is "
        "`escalate` and it is the last step (its last repeat); an earlier `final` step is sent as `firm`",
    )

    @model_serializer(mode="wrap")
    def _readable_by_older_replicas(self, handler: SerializerFunctionWrapHandler) -> Any:
        """At their defaults the newer fields are left out of the stored body: during a rolling upgrade a
        replica from before them (`extra="forbid"`) still reads the active policy."""
        out = handler(self)
        if isinstance(out, dict):
            for name, default in OMITTED_AT_DEFAULT.items():
                if getattr(self, name) == default:
                    out.pop(name, None)
            for step in out.get("steps", []):
                if isinstance(step, dict) and step.get("risk_bands") is None:
                    step.pop("risk_bands", None)
        return out

    @model_validator(mode="after")
    def _ordered(self) -> Policy:
        nums = [s.step for s in self.steps]
        if nums != list(range(1, len(nums) + 1)):
            raise ValueError("steps must be numbered 1..n in order")
        dpd = [s.min_days_past_due for s in self.steps]
        if dpd != sorted(dpd):
            raise ValueError("min_days_past_due must not decrease along the steps")
        if any(s.repeat_every_days for s in self.steps[:-1]):
            raise ValueError("only the last step may repeat")
        missing = MANDATORY_STOPS - set(self.stop_conditions)
        if missing:
            raise ValueError(f"stop_conditions must include {sorted(m.value for m in missing)} (compliance)")
        return self

    def get(self, step: int) -> PolicyStep:
        return self.steps[min(step, len(self.steps)) - 1]

    def applies(self, step: int, band: str | None) -> bool:
        """Does `step` (a repeat counts as the last step) go to an account in `band`?"""
        return self.get(step).applies(band)

    @property
    def last_step(self) -> int:
        """Highest step number including repeats of the last step (step n + k = k-th repeat)."""
        return len(self.steps) + self.steps[-1].max_repeats

    def last_step_for(self, band: str | None) -> int:
        """The highest step (repeats included) that goes to an account in `band`; 0 when none does."""
        if self.steps[-1].applies(band):
            return self.last_step
        return max((s.step for s in self.steps if s.applies(band)), default=0)

    def wording_tier(self, step: int, band: str | None = None) -> Tier:
        """The tier a notice of `step` is sent as (its wording, priority and escalation's no_response all
        follow it): the step's own tier, except that a message only calls itself final when people come
        next, i.e. it is the last step (the last repeat) for the account's risk `band` and the policy
        escalates after it; any other `final` step is sent as `firm`. Without a band: the policy's last
        step (for listings that show the policy, not one account)."""
        tier = self.get(step).tier
        last = self.last_step if band is None else self.last_step_for(band)
        if tier is Tier.FINAL and not (step >= last and self.after_last_step == "escalate"):
            return Tier.FIRM
        return tier

    def stops(self, condition: StopCondition) -> bool:
        return condition in self.stop_conditions

    def needs_approval(
        self, balance_minor: int, currency: str | None, complex_flag: bool, rates: RateTable
    ) -> str | None:
        """The approval rule that holds this account's step, or None. Money is compared in the reporting
        currency; a balance (or threshold) that cannot be converted holds the step."""
        a = self.approval
        if complex_flag and a.complex_accounts:
            return "approval.complex"
        if a.balance_above_minor is None:
            return None
        limit = rates.to_reporting_minor(a.balance_above_minor, a.currency or rates.reporting_currency)
        balance = rates.to_reporting_minor(balance_minor, currency)
        if limit is None or balance is None:
            note_unpriced(currency if balance is None else a.currency, "segmenter.approval")
            return "approval.unpriced_currency"
        if balance > limit:
            return "approval.high_balance"
        return None


def check_currencies(policy: Policy, rates: RateTable) -> list[dict[str, Any]]:
    """Problems (PolicyError items) with the currencies a policy states, given the rates in force."""
    cur = policy.approval.currency
    if cur is not None and not rates.has_rate(cur):
        return [
            {
                "loc": "approval.currency",
                "msg": f"no {rates.reporting_currency} rate for {cur} in the rates table "
                f"({rates.source}, as of {rates.as_of.isoformat()})",
            }
        ]
    return []


class PolicyError(ValueError):
    """A policy document that cannot be used; `errors` lists each problem with its location."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e['loc']}: {e['msg']}" for e in errors))


def parse_policy(text: str) -> Policy:
    """YAML (or JSON) text -> Policy, or PolicyError naming every problem and where it is."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "document"
        raise PolicyError([{"loc": where, "msg": f"not valid YAML: {getattr(e, 'problem', e)}"}]) from None
    if not isinstance(data, dict):
        raise PolicyError([{"loc": "document", "msg": "a policy is a mapping with id, version and steps"}])
    try:
        return Policy.model_validate(data)
    except ValidationError as e:
        raise PolicyError(
            [
                {"loc": ".".join(str(p) for p in err["loc"]) or "policy", "msg": err["msg"]}
                for err in e.errors(include_url=False)
            ]
        ) from None


def load_policy(path: str | Path | None = None) -> Policy:
    if path is None:
        text = (resources.files("arrears_segmenter") / "policies" / "default.yaml").read_text()
    else:
        text = Path(path).read_text()
    return parse_policy(text)
