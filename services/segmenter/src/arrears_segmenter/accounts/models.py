"""Account projection and decision log (SQLAlchemy Core) + API bodies."""

from __future__ import annotations

from datetime import date, datetime

from arrears_shared.contact_window import ContactWindow
from pydantic import BaseModel, ConfigDict, Field
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
    Column("balance_minor", BigInteger, nullable=False),
    Column("currency", Text),  # NULL until the account is known from the sheet
    Column("due_date", Date),
    Column("last_payment_date", Date),
    Column("last_payment_minor", BigInteger),
    Column("timezone", Text),
    Column("timezone_unknown", Boolean, nullable=False),
    Column("country", Text),
    Column("region", Text),
    Column("status", Text, nullable=False),
    Column("source_status", Text, nullable=False),
    Column("hold", Text),
    Column("removed", Boolean, nullable=False),
    Column("content_hash", Text),
    Column("as_of", DateTime(timezone=True)),
    Column("do_not_contact", Boolean, nullable=False),
    Column("promise_hold_until", Date),  # promised day: reminders wait until the day after
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
    Column("manual_pause_until", DateTime(timezone=True)),  # end of a pause a person set
    Column("pause_reason", Text),
    Column("channel_preference", Text),
    Column("send_now", JSONB),
    Column("contact_window", JSONB),  # the debtor's quiet times (preferences/), None: none
    Column("promise_plan", JSONB),  # the instalment plan behind a promise hold (accounts/terms.py)
    Column("settlement", JSONB),  # an accepted settlement offer and what was paid toward it
)

# One row per account and channel of the registry (arrears_shared.channels) the account has any fact about:
# its address and consent from the sheet, and what happened since (opt-out, a permanent failure, a person's
# per-channel stop). A new channel needs no column.
account_channels = Table(
    "account_channels",
    metadata,
    Column("account_id", Text, primary_key=True),
    Column("channel", Text, primary_key=True),
    Column("address", Text),
    Column("consent", Boolean, nullable=False),
    Column("opted_out", Boolean, nullable=False),
    Column("invalid", Boolean, nullable=False),
    Column("stopped", Boolean, nullable=False),
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


class ChannelView(BaseModel):
    """One channel of an account: its masked address and why it can or cannot be used."""

    channel: str
    label: str
    address_masked: str | None
    consent: bool
    opted_out: bool
    invalid: bool = Field(description="The address failed permanently (bounce, wrong number)")
    stopped: bool = Field(description="A person stopped contact on this channel")


class AccountView(BaseModel):
    account_id: str
    known: bool
    customer_name: str
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
    do_not_contact: bool
    channels: list[ChannelView] = Field(
        default_factory=list,
        description="Every channel the account has an address or a fact on, in registry order",
    )
    promise_hold_until: date | None = Field(
        description="Promised day of a promise-to-pay hold: reminders wait until the day after"
    )
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
    manual_pause_until: datetime | None = Field(
        None, description="End of the manual pause (None while paused = until resumed)"
    )
    channel_preference: list[str] = Field(
        default_factory=list, description="Channels in the order a person set (empty = the policy's order)"
    )
    send_now_step: int | None = Field(None, description="Step a person made due now, until it has fired")
    contact_window: ContactWindow | None = Field(
        None,
        description="The debtor's own quiet times (from the portal), in their local time: steps go only "
        "inside both these and the legal contact window",
    )
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


def mask_address(kind: str, address: str | None) -> str | None:
    return mask_phone(address) if kind == "phone" else mask_email(address)


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
    `actor` sent in the body is ignored. Strict: `false` or `0.0` would otherwise be read as a score of 0
    or as `false`."""

    model_config = ConfigDict(strict=True)

    complex: bool | None = Field(None, description="Complex case: every step waits for approval")
    do_not_contact: bool | None = Field(None, description="Cease request, attorney, ...: no contact at all")
    risk_override: int | None = Field(None, ge=0, le=100, description="Pin the risk score (0-100)")
    clear_risk_override: bool = False
    reason: str = ""
