"""Notifications for people (SLA breaches): the console list and the email of each."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, Table, Text

from ..cases.models import SCHEMA

metadata = MetaData(schema=SCHEMA)

notifications = Table(
    "notifications",
    metadata,
    Column("id", BigInteger, autoincrement=True),
    Column("kind", Text, primary_key=True),
    Column("task_id", Text, primary_key=True),
    Column("recipient", Text, primary_key=True),
    Column("why", Text, nullable=False),
    Column("account_id", Text, nullable=False),
    Column("team", Text, nullable=False),
    Column("title", Text, nullable=False),
    Column("link", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("read_at", DateTime(timezone=True)),
)

notification_emails = Table(
    "notification_emails",
    metadata,
    Column("notification_id", BigInteger, primary_key=True),
    Column("address", Text, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("provider_message_id", Text),
    Column("error", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


class NotificationView(BaseModel):
    id: int
    kind: Literal["sla_breach"]
    task_id: str
    why: Literal["assignee", "lead"]
    account_id: str
    team: str
    title: str
    link: str
    created_at: datetime
    read_at: datetime | None


class Inbox(BaseModel):
    unread: int
    items: list[NotificationView]
