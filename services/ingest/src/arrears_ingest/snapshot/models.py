"""Tables of the `ingest` schema (SQLAlchemy Core) used for reads; bulk writes use `unnest` SQL."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, DateTime, Integer, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import JSONB, UUID

SCHEMA = "ingest"
metadata = MetaData(schema=SCHEMA)

snapshot = Table(
    "snapshot",
    metadata,
    Column("account_id", Text, primary_key=True),
    Column("content_hash", Text, nullable=False),
    Column("raw_hash", Text, nullable=False),
    Column("row_number", Integer, nullable=False),
    Column("data", JSONB, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", UUID(as_uuid=False), primary_key=True),
    Column("source", Text, nullable=False),
    Column("trigger", Text, nullable=False),
    Column("started", DateTime(timezone=True), nullable=False),
    Column("finished", DateTime(timezone=True)),
    Column("rows", Integer, nullable=False),
    Column("accepted", Integer, nullable=False),
    Column("rejected", Integer, nullable=False),
    Column("unchanged", Integer, nullable=False),
    Column("created", Integer, nullable=False),
    Column("updated", Integer, nullable=False),
    Column("removed", Integer, nullable=False),
    Column("warnings", Integer, nullable=False),
    Column("status", Text, nullable=False),
    Column("error", Text),
)

rejects = Table(
    "rejects",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("source", Text, nullable=False),
    Column("batch_id", UUID(as_uuid=False), nullable=False),
    Column("row_number", Integer, nullable=False),
    Column("account_id", Text),
    Column("column", Text),
    Column("value", Text),
    Column("reason", Text, nullable=False),
    Column("balance_minor", BigInteger),
    Column("currency", Text),
    Column("rejected_at", DateTime(timezone=True), nullable=False),
)
