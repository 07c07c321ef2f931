"""API bodies of the console."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field


class AgingRow(BaseModel):
    bucket: str
    currency: str
    accounts: int
    balance_minor: int = Field(description="Minor units of `currency`")
    reporting_minor: int | None = Field(
        description="balance_minor converted to the reporting currency (minor units, rounded once, half away "
        "from zero); null when the rates table has no rate for `currency`"
    )


class CurrencyTotal(BaseModel):
    currency: str
    accounts: int
    balance_minor: int = Field(description="Minor units of `currency`")
    reporting_minor: int | None = Field(description="Sum of the rows' reporting_minor; null: no rate")


class AgingReport(BaseModel):
    as_of: date
    buckets: list[str]
    rows: list[AgingRow]
    reporting_currency: str = Field(description="Currency of every reporting_minor figure")
    rates_as_of: date = Field(description="Date of the rates table the conversion used")
    currencies: list[CurrencyTotal] = Field(description="Per-currency totals over every bucket")
    reporting_by_bucket: dict[str, int] = Field(
        description="Per bucket: the sum of the converted rows (currencies without a rate left out)"
    )
    reporting_total_minor: int = Field(
        description="All buckets and currencies with a rate, in minor units of the reporting currency"
    )
    unpriced_currencies: list[str] = Field(
        description="Currencies left out of the reporting totals (no rate): the totals are partial if any"
    )


class AccountView(BaseModel):
    account_id: str
    customer_name: str
    balance_minor: int
    currency: str
    due_date: date
    days_past_due: int
    bucket: str
    status: str
    source: str
    sms_consent: bool
    email_consent: bool
    opt_outs: list[str]
    last_payment_date: date | None
    as_of: datetime
    phone: str | None = None
    email: str | None = None
    campaign_id: str | None = Field(None, description="Campaign of the account's latest notice")
    risk_band: str | None = Field(
        None, description="Band of the account's latest model score (account-scored)"
    )


class AccountList(BaseModel):
    items: list[AccountView]
    count: int


class TimelineItem(BaseModel):
    ce_id: str
    account_id: str
    topic: str
    ce_type: str
    at: datetime
    summary: str


class Timeline(BaseModel):
    account_id: str | None
    items: list[TimelineItem]
    next_cursor: str | None = Field(None, description="Cursor of the next page (none: the last)")


class ChannelOutcomes(BaseModel):
    sent: int = 0
    failed: int = 0
    suppressed: int = 0


class Summary(BaseModel):
    events_per_topic: dict[str, int]
    notices_due: int
    messages_by_channel: dict[str, ChannelOutcomes]
    replies_by_intent: dict[str, int]
    open_cases: int
    rejects: int
    dlq: int
    accounts: int


class DlqItem(BaseModel):
    topic: str
    partition: int
    offset: int
    ce_id: str | None
    ce_type: str | None
    account_id: str | None
    original_topic: str | None
    consumer_group: str | None
    reason: str | None
    attempts: int | None
    service: str | None
    dead_lettered_at: datetime | None
    recorded_at: datetime


class DlqList(BaseModel):
    items: list[DlqItem]
    count: int
    next_cursor: str | None = Field(None, description="Cursor of the next page (none: the last)")


class RejectItem(BaseModel):
    ce_id: str
    account_id: str
    source: str
    batch_id: str
    row_number: int
    column: str | None
    value: str | None
    reason: str
    rejected_at: datetime


class RejectList(BaseModel):
    items: list[RejectItem]
    count: int
    next_cursor: str | None = Field(None, description="Cursor of the next page (none: the last)")
