"""API bodies of the console."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel


class AgingRow(BaseModel):
    bucket: str
    currency: str
    accounts: int
    balance_minor: int


class AgingReport(BaseModel):
    as_of: date
    buckets: list[str]
    rows: list[AgingRow]


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
