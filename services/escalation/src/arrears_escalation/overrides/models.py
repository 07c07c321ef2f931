"""Bodies of the manual overrides API."""

from __future__ import annotations

from datetime import date, datetime

from arrears_shared.events import Channel
from pydantic import AwareDatetime, BaseModel, Field


class Reason(BaseModel):
    reason: str = Field("", max_length=2000)


class Pause(Reason):
    until: AwareDatetime | None = Field(None, description="None = until resumed")


class Snooze(Reason):
    until: AwareDatetime


class SendNow(Reason):
    step: int = Field(ge=0)
    gate_override: bool = Field(
        False, description="Skip the compliance gate: supervisors only, and a reason is required"
    )


class ChannelPreference(Reason):
    channels: list[Channel] = Field(min_length=1)


class DoNotContact(Reason):
    channels: list[Channel] = Field(default_factory=list, description="Empty = every channel")


class RecordPromise(Reason):
    due_date: date = Field(description="The day the customer promised to pay by (their local date)")
    amount_minor: int | None = Field(
        None, ge=0, description="Amount promised, minor units of the account's currency (empty: the balance)"
    )


class Note(BaseModel):
    body: str = Field(min_length=1, max_length=5000)
    case_id: str | None = None


class OverrideAccepted(BaseModel):
    override_id: str
    action: str
    account_id: str
    audit_seq: int
    requested_at: datetime
