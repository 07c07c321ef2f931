"""Campaigns (seed 004): target criteria, owner, goal and a lifecycle planned -> active -> completed /
cancelled. Every notice carries the id of the active campaign that targets its account."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum

from arrears_shared.events import AgingBucket, Currency
from arrears_shared.money import RateTable, note_unpriced
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import BigInteger, Column, DateTime, Integer, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from ..accounts.account import Account
from ..accounts.models import metadata

campaigns = Table(
    "campaigns",
    metadata,
    Column("campaign_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("owner", Text, nullable=False),
    Column("goal", Text, nullable=False),
    Column("criteria", JSONB, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("paused_by", Text),
    Column("pause_until", DateTime(timezone=True)),
    Column("pause_reason", Text),
    Column("goal_minor", BigInteger),  # revision 0010: the goal as an amount
    Column("goal_currency", Text),
)


class CampaignStatus(StrEnum):
    PLANNED = "planned"
    ACTIVE = "active"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


TRANSITIONS: dict[CampaignStatus, set[CampaignStatus]] = {
    CampaignStatus.PLANNED: {CampaignStatus.ACTIVE, CampaignStatus.CANCELLED},
    CampaignStatus.ACTIVE: {CampaignStatus.COMPLETED, CampaignStatus.CANCELLED},
    CampaignStatus.COMPLETED: set(),
    CampaignStatus.CANCELLED: set(),
}


class Criteria(BaseModel):
    """Which accounts a campaign targets; every stated condition must hold (omitted = any).

    Balance bounds are minor units of the reporting currency (`arrears_shared.money`); the account's balance
    is converted first. A campaign with a balance bound does not target an account whose currency has no
    rate (the account still gets its notices, just not under that campaign)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # strict: a JSON `false` is not a bound of 0
    min_balance_minor: int | None = Field(
        None, ge=0, strict=True, description="Minor units of the reporting currency"
    )
    max_balance_minor: int | None = Field(
        None, ge=0, strict=True, description="Minor units of the reporting currency"
    )
    aging_buckets: list[AgingBucket] | None = None
    min_days_past_due: int | None = Field(None, ge=0, strict=True)
    max_days_past_due: int | None = Field(None, ge=0, strict=True)
    risk_bands: list[str] | None = None
    histories: list[str] | None = None
    countries: list[str] | None = None

    @model_validator(mode="after")
    def _ranges(self) -> Criteria:
        if (
            self.min_balance_minor is not None
            and self.max_balance_minor is not None
            and self.min_balance_minor > self.max_balance_minor
        ):
            raise ValueError("min_balance_minor must not exceed max_balance_minor")
        if (
            self.min_days_past_due is not None
            and self.max_days_past_due is not None
            and self.min_days_past_due > self.max_days_past_due
        ):
            raise ValueError("min_days_past_due must not exceed max_days_past_due")
        return self

    def matches(self, acct: Account, dpd: int, bucket: str, risk_band: str, rates: RateTable) -> bool:
        if self.min_balance_minor is not None or self.max_balance_minor is not None:
            bal = rates.to_reporting_minor(acct.balance_minor, acct.currency)
            if bal is None:
                note_unpriced(acct.currency, "segmenter.campaign")
                return False
            if (self.min_balance_minor is not None and bal < self.min_balance_minor) or (
                self.max_balance_minor is not None and bal > self.max_balance_minor
            ):
                return False
        return not (
            (self.aging_buckets is not None and bucket not in {b.value for b in self.aging_buckets})
            or (self.min_days_past_due is not None and dpd < self.min_days_past_due)
            or (self.max_days_past_due is not None and dpd > self.max_days_past_due)
            or (self.risk_bands is not None and risk_band not in self.risk_bands)
            or (self.histories is not None and acct.history not in self.histories)
            or (self.countries is not None and (acct.country or "").upper() not in self.countries)
        )


class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    campaign_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = Field(min_length=1)
    owner: str = Field(min_length=1, description="Collector or team responsible")
    goal: str = ""
    criteria: Criteria = Field(default_factory=Criteria)
    priority: int = Field(
        0,
        strict=True,  # a JSON `true` is not a priority of 1
        ge=-(2**31),
        le=2**31 - 1,  # a PostgreSQL `integer`
        description="Higher wins when several active campaigns target an account",
    )
    goal_minor: int | None = Field(
        None, ge=0, strict=True, description="The amount to collect, minor units of `goal_currency`"
    )
    goal_currency: Currency | None = Field(None, description="Currency of `goal_minor` (required with it)")

    @model_validator(mode="after")
    def _goal(self) -> CampaignIn:
        if self.goal_minor is not None and self.goal_currency is None:
            raise ValueError("goal_minor needs goal_currency")
        return self


class Campaign(CampaignIn):
    status: CampaignStatus
    created_at: datetime
    updated_at: datetime
    paused_by: str | None = Field(
        None, description="Who paused the campaign (manual override); its accounts' steps wait meanwhile"
    )
    pause_until: datetime | None = Field(None, description="End of the pause (None = until resumed)")
    pause_reason: str | None = None


def pick_campaign(
    active: Sequence[Campaign],
    acct: Account,
    dpd: int,
    bucket: str,
    risk_band: str,
    rates: RateTable,
) -> Campaign | None:
    """The targeting active campaign with the highest priority (then oldest, then id); `active` is sorted."""
    for c in active:
        if c.criteria.matches(acct, dpd, bucket, risk_band, rates):
            return c
    return None


class CampaignUpdate(BaseModel):
    """What may change on an existing campaign (only the fields given change; `goal_minor: null` clears the
    goal amount). Criteria and priority stay as created: a different targeting is a new campaign."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1)
    owner: str | None = Field(None, min_length=1)
    goal: str | None = None
    goal_minor: int | None = Field(None, ge=0, strict=True)
    goal_currency: Currency | None = None


class Transition(BaseModel):
    """Who made the transition is the authenticated caller (audit log); an `actor` in the body is ignored."""

    status: CampaignStatus
