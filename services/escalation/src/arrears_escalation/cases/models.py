"""Cases and escalation timers (SQLAlchemy Core) + API bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import BigInteger, Column, DateTime, MetaData, Table, Text

SCHEMA = "escalation"
metadata = MetaData(schema=SCHEMA)

cases = Table(
    "cases",
    metadata,
    Column("case_id", Text, primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("priority", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True)),
    Column("close_note", Text),
    Column("detail", Text, nullable=False),
    Column("trigger_id", Text, nullable=False),
    Column("rule_id", Text),
    Column("due_at", DateTime(timezone=True)),
)

timers = Table(
    "timers",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("account_id", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("trigger_id", Text, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("state", Text, nullable=False),
    Column("reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


class CaseView(BaseModel):
    case_id: str
    account_id: str
    reason: str
    priority: str
    status: Literal["open", "closed"]
    opened_at: datetime
    closed_at: datetime | None
    close_note: str | None
    detail: str
    trigger_id: str
    rule_id: str | None = None
    due_at: datetime | None = None


class CloseCase(BaseModel):
    note: str = Field(min_length=1, max_length=2000)
