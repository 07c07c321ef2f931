"""Tasks: work for a person, with priority, team, assignee, due date and SLA."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import Column, DateTime, MetaData, Table, Text

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
    Column("detail", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True)),
    Column("outcome", Text),
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
    sla_state: Literal["ok", "breached", "escalated"]
    detail: str
    created_at: datetime
    completed_at: datetime | None
    outcome: str | None


class AssignTask(BaseModel):
    assignee: str = Field(min_length=1, max_length=100)
    reason: str = Field("", max_length=2000)


class CompleteTask(BaseModel):
    outcome: str = Field(min_length=1, max_length=2000)
