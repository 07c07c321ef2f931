"""Payment webhook bodies (Stripe events, the generic JSON payment) and the API answer."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

# Stripe event types that mean "money arrived" / "a payment attempt failed"; every other type is
# acknowledged and ignored.
STRIPE_PAYMENT_TYPES = ("payment_intent.succeeded", "charge.succeeded", "checkout.session.completed")
STRIPE_FAILURE_TYPES = ("payment_intent.payment_failed", "charge.failed")
GENERIC_PAYMENT_TYPES = ("payment.succeeded", "payment.received")
GENERIC_FAILURE_TYPES = ("payment.failed",)


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


class GenericPaymentFailure(BaseModel):
    """`data` of a generic `payment.failed`: the payment that failed, and why. The amount (`amount_minor` or
    `amount`) and currency are optional (not every gateway reports them on a failure)."""

    model_config = ConfigDict(extra="ignore")

    payment_id: str = Field(min_length=1, max_length=255)
    account_id: str = Field(min_length=1, max_length=64)
    amount_minor: int | None = Field(None, gt=0)
    amount: Decimal | None = Field(None, gt=0)
    currency: str | None = Field(None, pattern=r"^[A-Za-z]{3}$")
    failed_at: AwareDatetime | None = None
    failure_code: str | None = Field(None, max_length=100)
    failure_message: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _amount_needs_currency(self) -> GenericPaymentFailure:
        if self.amount_minor is not None and self.amount is not None:
            raise ValueError("give at most one of amount_minor or amount")
        if (self.amount_minor is not None or self.amount is not None) and self.currency is None:
            raise ValueError("an amount needs its currency")
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


class PaymentFailure(BaseModel):
    """A failed payment attempt as recorded: the same shape whichever webhook brought it."""

    provider: Literal["stripe", "generic"]
    payment_id: str
    failure_id: str = Field(
        description="the failed attempt: Stripe charge id (else event id); generic: payment id"
    )
    event_id: str
    account_id: str = Field(min_length=1, max_length=64)
    amount_minor: int | None = Field(None, gt=0)
    currency: str | None = Field(None, pattern=r"^[A-Z]{3}$")
    failure_code: str | None = Field(None, max_length=100)
    failure_message: str = Field("", max_length=500)
    failed_at: AwareDatetime


class PaymentResult(BaseModel):
    status: Literal["applied", "failed", "duplicate", "replayed", "ignored", "rejected"] = Field(
        description="applied: balance updated and account-changed published; failed: a failed payment "
        "recorded and published (payment-failed on account-changed; the balance is unchanged); duplicate: "
        "this payment (or failed attempt) was already recorded (another event for it); replayed: this "
        "delivery was already processed; ignored: not a payment event; rejected: recorded as an ingest "
        "reject (unknown account, currency)"
    )
    account_id: str | None = None
    payment_id: str | None = None
    balance_minor: int | None = None
    currency: str | None = None
    account_status: str | None = None
    reason: str | None = None
