"""Settlement offers: the API's bodies and what it answers."""

from __future__ import annotations

from datetime import date, datetime

from arrears_shared.isodate import IsoDate
from pydantic import BaseModel, Field

from ..overrides.models import PG_BIGINT_MAX

MAX_DAYS_AHEAD = 365  # an offer's last day, at most this many days from today


class OfferCreate(BaseModel):
    amount_minor: int = Field(
        gt=0,
        le=PG_BIGINT_MAX,
        strict=True,  # `true` is not an offer of 1
        description="What the customer pays to settle, minor units of the account's currency; less than the "
        "balance",
    )
    expires_on: IsoDate = Field(
        description="Last day the customer can accept the offer, and the day to pay it by (their local day); "
        f"today .. {MAX_DAYS_AHEAD} days ahead"
    )
    note: str = Field(
        "", max_length=2000, description="Why the offer (for the team; not shown to the customer)"
    )


class OfferView(BaseModel):
    offer_id: str
    account_id: str
    amount_minor: int
    currency: str
    balance_minor: int
    expires_on: date
    status: str  # offered | accepted | withdrawn | expired (an offered one past its day reads expired)
    note: str
    created_by: str
    created_at: datetime
    withdrawn_by: str | None
    withdrawn_at: datetime | None
    accepted_at: datetime | None
