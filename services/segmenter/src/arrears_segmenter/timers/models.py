"""Durable timers and the notice ledger (SQLAlchemy Core)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, Table, Text

from ..accounts.models import metadata

timers = Table(
    "timers",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("account_id", Text, nullable=False),
    Column("step", Integer, nullable=False),
    Column("cycle", Integer, nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),
    Column("state", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("reason", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("policy_id", Text),
    Column("policy_version", Integer),
    Column("approved_by", Text),
    Column("approved_at", DateTime(timezone=True)),
)

notices = Table(
    "notices",
    metadata,
    Column("notice_id", Text, primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("policy_id", Text, nullable=False),
    Column("policy_version", Integer, nullable=False),
    Column("step", Integer, nullable=False),
    Column("cycle", Integer, nullable=False),
    Column("channel", Text, nullable=False),
    Column("tier", Text, nullable=False),
    Column("emitted_at", DateTime(timezone=True), nullable=False),
    Column("campaign_id", Text),
    Column(
        "failed_at", DateTime(timezone=True)
    ),  # failed permanently: the step falls back to its next channel
)
