"""Tasks: work for a person, with priority, team, assignee, due date and SLA."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import BigInteger, Column, Date, DateTime, Float, MetaData, Table, Text

from ..cases.models import SCHEMA

metadata = MetaData(schema=SCHEMA)

tasks = Table(
    "tasks",
    metadata,
    Column("task_id", Text, primary_key=True),
    Column("case_id", Text),
    Column("account_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("rule_id", Text),
    Column("priority", Text, nullable=False),
    Column("team", Text, nullable=False),
    Column("assignee", Text),
    Column("status", Text, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("sla_due_at", DateTime(timezone=True), nullable=False),
    Column("sla_state", Text, nullable=False),
    Column("sla_working_s", Float),  # the SLA in working seconds of the team's calendar
    Column("sla_at_risk_at", DateTime(timezone=True)),
    Column("detail", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True)),
    Column("outcome", Text),
    # revision 0010: what created the task (campaign, promise) and the follow-up date a collector sets
    Column("campaign_id", Text),
    Column("promise_id", Text),
    Column("promise_amount_minor", BigInteger),
    Column("promise_currency", Text),
    Column("promise_date", Date),
    Column("follow_up_at", DateTime(timezone=True)),
)


class TaskView(BaseModel):
    task_id: str
    case_id: str | None
    account_id: str
    kind: str
    rule_id: str | None
    priority: Literal["low", "normal", "high", "critical"]
    team: str
    assignee: str | None
    status: Literal["open", "done", "cancelled"]
    due_at: datetime
    sla_due_at: datetime
    sla_state: Literal["ok", "at_risk", "breached", "escalated"]
    sla_at_risk_at: datetime | None = None
    detail: str
    created_at: datetime
    completed_at: datetime | None
    outcome: str | None
    campaign_id: str | None = Field(
        None, description="Campaign of the account's latest automatic message when the task was created"
    )
    promise_id: str | None = Field(None, description="The promise to pay the task is about")
    promise_amount_minor: int | None = Field(None, description="Promised amount, minor units of the currency")
    promise_currency: str | None = None
    promise_date: date | None = Field(None, description="The date the customer promised to pay by")
    follow_up_at: datetime | None = Field(None, description="When the collector plans to follow up")
    risk_band: Literal["low", "medium", "high"] | None = Field(
        None, description="Lists: the band of the account's latest model score (account-scored), if any"
    )
    risk_score: int | None = Field(None, description="Lists: the model's risk score (0-100)")
    expected_recovery_minor: int | None = Field(
        None, description="Lists: the model's expected recovered amount, minor units of the currency"
    )
    expected_recovery_currency: str | None = None


class AssignTask(BaseModel):
    assignee: str = Field(min_length=1, max_length=100)
    reason: str = Field("", max_length=2000)


class CompleteTask(BaseModel):
    outcome: str = Field(min_length=1, max_length=2000)


class FollowUp(BaseModel):
    """Set (or clear, with null) the follow-up date of an open task."""

    follow_up_at: AwareDatetime | None
    reason: str = Field("", max_length=2000)
