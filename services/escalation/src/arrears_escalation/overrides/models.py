"""Bodies of the manual overrides API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from arrears_shared.events import Channel
from arrears_shared.isodate import IsoDate
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, Field

PG_INT_MAX = 2**31 - 1  # the segmenter keeps steps in PostgreSQL `integer` columns
PG_BIGINT_MAX = 2**63 - 1  # amounts are `bigint`


class Reason(BaseModel):
    reason: str = Field("", max_length=2000)


def _written(value: object) -> object:
    """An instant is written out (RFC 3339): pydantic would also take a number for a Unix time."""
    if isinstance(value, int | float):
        raise ValueError("an instant is written as RFC 3339, e.g. 2026-01-31T12:00:00Z")
    return value


def _in_utc(value: datetime) -> datetime:
    """An instant with any offset Python allows (up to +-24 h) is kept in UTC: PostgreSQL refuses offsets
    beyond +-15:59 where the segmenter stores it, which dead-lettered the override."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the instant is out of range") from None


Instant = Annotated[AwareDatetime, BeforeValidator(_written), AfterValidator(_in_utc)]


class Pause(Reason):
    until: Instant | None = Field(None, description="None = until resumed")


class Snooze(Reason):
    until: Instant


class SendNow(Reason):
    # strict: `1` is not a request to skip the compliance gate, `false` not step 0
    step: int = Field(ge=0, le=PG_INT_MAX, strict=True)
    gate_override: bool = Field(
        False, strict=True, description="Skip the compliance gate: supervisors only, and a reason is required"
    )


class ChannelPreference(Reason):
    channels: list[Channel] = Field(min_length=1)


class DoNotContact(Reason):
    channels: list[Channel] = Field(default_factory=list, description="Empty = every channel")


class RecordPromise(Reason):
    due_date: IsoDate = Field(description="The day the customer promised to pay by (their local date)")
    amount_minor: int | None = Field(
        None,
        ge=0,
        le=PG_BIGINT_MAX,
        strict=True,  # `false` is not a promise of 0
        description="Amount promised, minor units of the account's currency (empty: the balance)",
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
