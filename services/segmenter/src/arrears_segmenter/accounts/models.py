"""Account projection and decision log (SQLAlchemy Core) + API bodies."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

SCHEMA = "segmenter"
metadata = MetaData(schema=SCHEMA)

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", Text, primary_key=True),
    Column("known", Boolean, nullable=False),
    Column("change", Text),
    Column("source", Text),
    Column("source_row", Integer),
    Column("customer_name", Text, nullable=False),
    Column("phone", Text),
    Column("email", Text),
    Column("balance_minor", BigInteger, nullable=False),
    Column("currency", Text),  # NULL until the account is known from the sheet
    Column("due_date", Date),
    Column("last_payment_date", Date),
    Column("last_payment_minor", BigInteger),
    Column("timezone", Text),
    Column("timezone_unknown", Boolean, nullable=False),
    Column("country", Text),
    Column("region", Text),
    Column("sms_consent", Boolean, nullable=False),
    Column("email_consent", Boolean, nullable=False),
    Column("status", Text, nullable=False),
    Column("source_status", Text, nullable=False),
    Column("hold", Text),
    Column("removed", Boolean, nullable=False),
    Column("content_hash", Text),
    Column("as_of", DateTime(timezone=True)),
    Column("sms_opt_out", Boolean, nullable=False),
    Column("email_opt_out", Boolean, nullable=False),
    Column("do_not_contact", Boolean, nullable=False),
    Column("sms_invalid", Boolean, nullable=False),
    Column("email_invalid", Boolean, nullable=False),
    Column("paused_until", Date),
    Column("promise_amount_minor", BigInteger),
    Column("cycle", Integer, nullable=False),
    Column("cycle_due_date", Date),
    Column("last_step", Integer, nullable=False),
    Column("last_step_at", DateTime(timezone=True)),
    Column("days_past_due", Integer, nullable=False),
    Column("aging_bucket", Text, nullable=False),
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
    Column("last_event_at", DateTime(timezone=True), nullable=False),
    Column("complex", Boolean, nullable=False),
    Column("risk_score", Integer, nullable=False),
    Column("risk_override", Integer),
    Column("partial_payments", Integer, nullable=False),
    Column("broken_promises", Integer, nullable=False),
    Column("balance_band", Text, nullable=False),
    Column("history", Text, nullable=False),
    Column("segment", Text, nullable=False),
    Column("paused_by", Text),
    Column("pause_until", DateTime(timezone=True)),
    Column("pause_reason", Text),
    Column("channel_preference", Text),
    Column("sms_do_not_contact", Boolean, nullable=False),
    Column("email_do_not_contact", Boolean, nullable=False),
    Column("send_now", JSONB),
)

decisions = Table(
    "decisions",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("account_id", Text, nullable=False),
    Column("step", Integer),
    Column("cycle", Integer),
    Column("channel", Text),
    Column("outcome", Text, nullable=False),
    Column("rule_id", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("notice_id", Text),
    Column("defer_until", DateTime(timezone=True)),
    Column("at", DateTime(timezone=True), nullable=False),
)


class TimerView(BaseModel):
    step: int
    cycle: int
    due_at: datetime
    state: str
    attempts: int
    reason: str | None
    policy_id: str | None = None
    policy_version: int | None = None
    approved_by: str | None = None


class AccountView(BaseModel):
    account_id: str
    known: bool
    customer_name: str
    phone_masked: str | None
    email_masked: str | None
    balance_minor: int
    currency: str | None
    due_date: date | None
    timezone: str | None
    timezone_unknown: bool
    country: str | None
    region: str | None
    status: str
    hold: str | None
    removed: bool
    sms_consent: bool
    email_consent: bool
    sms_opt_out: bool
    email_opt_out: bool
    do_not_contact: bool
    sms_invalid: bool
    email_invalid: bool
    paused_until: date | None
    cycle: int
    last_step: int
    last_step_at: datetime | None
    days_past_due: int
    aging_bucket: str
    first_seen_at: datetime
    last_event_at: datetime
    complex: bool
    risk_score: int
    risk_override: int | None
    partial_payments: int
    broken_promises: int
    balance_band: str
    history: str
    segment: str
    paused_by: str | None = Field(None, description="Who paused the account (manual pause / snooze)")
    pause_until: datetime | None = Field(None, description="End of the manual pause (None = until resumed)")
    channel_preference: list[str] = Field(
        default_factory=list, description="Channels in the order a person set (empty = the policy's order)"
    )
    sms_do_not_contact: bool = False
    email_do_not_contact: bool = False
    send_now_step: int | None = Field(None, description="Step a person made due now, until it has fired")
    timers: list[TimerView]


class DecisionView(BaseModel):
    id: int
    step: int | None
    cycle: int | None
    channel: str | None
    outcome: str
    rule_id: str
    reason: str
    notice_id: str | None
    defer_until: datetime | None
    at: datetime


def mask_phone(phone: str | None) -> str | None:
    if not phone:
        return None
    return phone[:2] + "*" * max(0, len(phone) - 4) + phone[-2:]


def mask_email(email: str | None) -> str | None:
    if not email:
        return None
    local, _, domain = email.partition("@")
    return (local[:1] + "***@" + domain) if domain else "***"


class FlagsUpdate(BaseModel):
    """Operator override of account flags (manual override, seed 001). Omitted fields stay as they are.
    Who made the change is the authenticated caller (recorded in the decision log and the audit log); an
    `actor` sent in the body is ignored."""

    complex: bool | None = Field(None, description="Complex case: every step waits for approval")
    do_not_contact: bool | None = Field(None, description="Cease request, attorney, ...: no contact at all")
    risk_override: int | None = Field(None, ge=0, le=100, description="Pin the risk score (0-100)")
    clear_risk_override: bool = False
    reason: str = ""
