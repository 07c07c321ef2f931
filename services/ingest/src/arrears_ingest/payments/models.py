"""Payment webhook bodies (Stripe events, the generic JSON payment) and the API answer."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

# Stripe event types that mean "money arrived"; every other type is acknowledged and ignored.
STRIPE_PAYMENT_TYPES = ("payment_intent.succeeded", "charge.succeeded", "checkout.session.completed")
GENERIC_PAYMENT_TYPES = ("payment.succeeded", "payment.received")


class StripeEvent(BaseModel):
    """The parts of a Stripe `Event` we read (https://docs.stripe.com/api/events/object)."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=255)
    type: str
    created: int | None = None
    livemode: bool = False
    data: dict[str, Any]


class GenericPayment(BaseModel):
    """`data` of the generic payment webhook. Give `amount_minor` (integer minor units) or `amount`
    (a decimal string in the currency's major unit, e.g. "120.50")."""

    model_config = ConfigDict(extra="ignore")

    payment_id: str = Field(min_length=1, max_length=255)
    account_id: str = Field(min_length=1, max_length=64)
    amount_minor: int | None = Field(None, gt=0)
    amount: Decimal | None = Field(None, gt=0)
    currency: str = Field(pattern=r"^[A-Za-z]{3}$")
    paid_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _one_amount(self) -> GenericPayment:
        if (self.amount_minor is None) == (self.amount is None):
            raise ValueError("give exactly one of amount_minor or amount")
        return self


class GenericPaymentEvent(BaseModel):
    """Body of the generic webhook (Standard Webhooks payload shape: type, timestamp, data)."""

    model_config = ConfigDict(extra="ignore")

    type: str
    timestamp: datetime | None = None
    data: dict[str, Any]


class Payment(BaseModel):
    """A payment as recorded: the same shape whichever webhook brought it."""

    provider: Literal["stripe", "generic"]
    payment_id: str
    event_id: str
    account_id: str
    amount_minor: int = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    paid_at: AwareDatetime


class PaymentResult(BaseModel):
    status: Literal["applied", "duplicate", "replayed", "ignored", "rejected"] = Field(
        description="applied: balance updated and account-changed published; duplicate: this payment was "
        "already recorded (another event for it); replayed: this delivery was already processed; "
        "ignored: not a payment event; rejected: recorded as an ingest reject (unknown account, currency)"
    )
    account_id: str | None = None
    payment_id: str | None = None
    balance_minor: int | None = None
    currency: str | None = None
    account_status: str | None = None
    reason: str | None = None
