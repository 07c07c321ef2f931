"""Bodies of the manual contacts API: a contact a person made outside the platform (a call, a letter, a visit,
a message from their own phone), recorded by hand or imported from the manual tracking sheet."""

from __future__ import annotations

import hashlib
from datetime import date, datetime

from arrears_shared.events import ManualContactChannel, ManualContactDirection, ManualContactOutcome
from arrears_shared.isodate import IsoDate
from pydantic import BaseModel, Field, model_validator

from ..overrides.models import PG_BIGINT_MAX, Instant

CONTACT_ID = r"^[A-Za-z0-9_.:-]{1,64}$"

# the columns of the manual tracking sheet (the console's export writes them; the import reads them)
SHEET_COLUMNS = (
    "account_id",
    "when",
    "channel",
    "direction",
    "outcome",
    "note",
    "promise_amount",
    "promise_date",
)


class RecordContact(BaseModel):
    channel: ManualContactChannel
    direction: ManualContactDirection = "outbound"
    outcome: ManualContactOutcome
    contacted_at: Instant = Field(description="When it happened: not in the future, not before the account")
    note: str = Field("", max_length=2000, description="Stored sealed with the account's data key")
    promise_amount_minor: int | None = Field(
        None, ge=0, le=PG_BIGINT_MAX, strict=True, description="A promise taken in the contact (minor units)"
    )
    promise_date: IsoDate | None = Field(None, description="The day the customer promised to pay by")
    contact_id: str | None = Field(
        None,
        pattern=CONTACT_ID,
        description="Your id for the contact (sending it again records nothing new); default: derived from "
        "the account, time, channel, direction, outcome and note",
    )

    @model_validator(mode="after")
    def _promise(self) -> RecordContact:
        if self.promise_amount_minor is not None and self.promise_date is None:
            raise ValueError("a promised amount needs promise_date")
        if self.promise_date is not None and (self.contacted_at.date() - self.promise_date).days > 1:
            raise ValueError("promise_date is before the contact")
        return self

    def derived_id(self, account_id: str) -> str:
        """The same contact (account, minute-exact time, how, what came of it, note) always gets this id: a
        form sent twice, or the same sheet row imported twice, is recorded once."""
        parts = (
            account_id,
            self.contacted_at.isoformat(),
            self.channel,
            self.direction,
            self.outcome,
            self.note.strip(),
            str(self.promise_amount_minor or ""),
            self.promise_date.isoformat() if self.promise_date else "",
        )
        return "mc-" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class ContactRecorded(BaseModel):
    contact_id: str
    account_id: str
    recorded: bool = Field(description="False: this contact was already recorded (nothing changed)")
    override_id: str | None = None
    promise_override_id: str | None = None
    audit_seq: int | None = None
    contacted_at: datetime


class RowRejected(BaseModel):
    row: int = Field(description="Row number in the file (the header is row 1)")
    column: str | None = None
    reason: str


class RowRecorded(BaseModel):
    row: int
    account_id: str
    contact_id: str
    recorded: bool = Field(description="False: already recorded by an earlier import or by hand")


class ImportResult(BaseModel):
    filename: str | None
    rows: int
    recorded: int
    already_recorded: int
    rejected: int
    good: list[RowRecorded]
    bad: list[RowRejected]


class AccountFacts(BaseModel):
    """What escalation knows of an account from its activity: enough to check a contact's time and read a
    promised amount in the account's currency."""

    first_seen_at: datetime
    currency: str | None
    due_date: date | None = None
