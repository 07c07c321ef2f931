"""Escalation rules as data: trigger, conditions, actions (validated pydantic models)."""

from __future__ import annotations

from typing import Annotated, Literal

from arrears_shared.events import Channel, Intent
from pydantic import BaseModel, ConfigDict, Field

Trigger = Literal[
    "reply",
    "no_response",
    "account_changed",
    "promise_broken",
    "delivery_failed",
    "payment_failed",
    "payment_retries_exhausted",
    "account_scored",
]
Priority = Literal["low", "normal", "high", "critical"]
CaseReason = Literal[
    "callback_request",
    "no_response",
    "dispute",
    "hardship",
    "high_value",
    "broken_promise",
    "failed_payment",
    "unclear_reply",
    "possible_opt_out",
    "delivery_failed",
]


class Conditions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    intents: list[Intent] | None = None
    min_confidence: float | None = Field(None, ge=0, le=1)
    max_confidence: float | None = Field(None, ge=0, le=1)
    min_balance_minor: int | None = Field(
        None,
        ge=0,
        description="Balance at least this, in minor units of the reporting currency (the account's balance "
        "is converted first; a balance in a currency without a rate counts as meeting it)",
    )
    channels: list[Channel] | None = None
    needs_review: bool | None = Field(
        None, description="reply: the classifier was (true) / was not (false) sure enough to act on it"
    )
    possible_opt_out: bool | None = Field(
        None, description="reply: a possible opt-out the classifier is unsure of (SMS to it is paused)"
    )
    grace_days: int = Field(
        0, ge=0, description="promise_broken: days after the due date before it is broken"
    )
    risk_bands: list[Literal["low", "medium", "high"]] | None = Field(
        None, description="account_scored: the model's band is one of these"
    )
    min_risk_score: int | None = Field(
        None, ge=0, le=100, description="account_scored: the model's risk score is at least this"
    )


class OpenCase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["open_case"]
    reason: CaseReason
    priority: Priority = "normal"
    due_in_hours: float = Field(72, gt=0)


class CreateTask(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["create_task"]
    kind: str = Field(min_length=1, max_length=64)
    team: str = Field("collectors", min_length=1, max_length=64)
    priority: Priority = "normal"
    due_in_hours: float = Field(72, gt=0)
    sla_hours: float = Field(24, gt=0)


class ResumeDunning(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["resume_dunning"]


Action = Annotated[OpenCase | CreateTask | ResumeDunning, Field(discriminator="type")]


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9_]{1,64}$")
    trigger: Trigger
    enabled: bool = True
    conditions: Conditions = Field(default_factory=Conditions)
    actions: list[Action] = Field(min_length=1)


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[Rule]
