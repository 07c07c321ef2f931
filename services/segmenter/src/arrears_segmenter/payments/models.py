"""Failed-payment retries and the ledger of customer notices that are not dunning steps (SQLAlchemy Core),
plus their settings as the handlers and the timer loop use them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from pydantic import BaseModel, Field
from sqlalchemy import ARRAY, BigInteger, Column, DateTime, Integer, PrimaryKeyConstraint, Table, Text

from ..accounts.models import metadata
from ..settings import ALL_CONFIRMATIONS

payment_retries = Table(
    "payment_retries",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("provider", Text, nullable=False),
    Column("payment_id", Text, nullable=False),
    Column("state", Text, nullable=False),  # at_risk | exhausted | cleared
    Column("failures", Integer, nullable=False),
    Column("failure_ids", ARRAY(Text), nullable=False),
    Column("retry_count", Integer, nullable=False),
    Column("retries_max", Integer, nullable=False),
    Column("next_at", DateTime(timezone=True)),
    Column("amount_minor", BigInteger),
    Column("currency", Text),
    Column("first_failed_at", DateTime(timezone=True), nullable=False),
    Column("last_failed_at", DateTime(timezone=True), nullable=False),
    Column("reason", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("account_id", "provider", "payment_id"),
)

customer_notices = Table(
    "customer_notices",
    metadata,
    Column("notice_id", Text, primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("purpose", Text, nullable=False),
    Column("trigger_id", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("emitted_at", DateTime(timezone=True), nullable=False),
)

# Spanish-speaking countries: their accounts get the `es` templates (an account without a country: `en`)
DEFAULT_LOCALES = {
    c: "es"
    for c in "AR BO CL CO CR CU DO EC ES GQ GT HN MX NI PA PE PR PY SV UY VE".split()  # noqa: SIM905
}


@dataclass(frozen=True)
class CustomerNotices:
    """How failed payments are retried and which confirmations go out (built from SegmenterSettings)."""

    retry_after: timedelta = timedelta(days=2)
    retries_max: int = 3
    pay_with: str = "reply to this message or call us to pay"
    payment_link: str | None = None
    confirmations: frozenset[str] = frozenset(ALL_CONFIRMATIONS)
    channels: tuple[str, ...] = ("sms", "email")
    expiry: timedelta = timedelta(days=3)
    locales: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_LOCALES))

    def way_to_pay(self) -> str:
        """The way to pay a retry notice offers: the payment link when one is configured (the debtor portal,
        issue #19, will set it), else the company's manual payment option."""
        return self.payment_link or self.pay_with

    def locale(self, country: str | None) -> str | None:
        return self.locales.get((country or "").upper())


def parse_locales(raw: str) -> dict[str, str]:
    """`{"MX": "es", ...}` (JSON); empty = the packaged Spanish-speaking countries."""
    if not raw.strip():
        return dict(DEFAULT_LOCALES)
    found = json.loads(raw)
    if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
        raise ValueError("ARREARS_SEGMENTER_LOCALES_BY_COUNTRY must be a JSON object of country -> locale")
    return {str(k).upper(): v for k, v in found.items()}


class PaymentRetryView(BaseModel):
    account_id: str
    provider: str
    payment_id: str
    state: str = Field(description="at_risk (retries scheduled), exhausted (recovery task) or cleared (paid)")
    at_risk: bool
    failures: int = Field(description="Failed attempts the gateway reported")
    retry_count: int = Field(description="Scheduled retries done (the customer was asked to pay again)")
    retries_max: int
    next_retry_at: datetime | None
    amount_minor: int | None
    currency: str | None
    first_failed_at: datetime
    last_failed_at: datetime
    reason: str | None
    updated_at: datetime
