"""The latest score of each account (`escalation.account_scores`, revision 0011)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Date, DateTime, Integer, Table, Text

from ..tasks.models import metadata

account_scores = Table(
    "account_scores",
    metadata,
    Column("account_id", Text, primary_key=True),
    Column("scored_on", Date, nullable=False),
    Column("scored_at", DateTime(timezone=True), nullable=False),
    Column("model_version", Text, nullable=False),
    Column("risk_score", Integer, nullable=False),
    Column("band", Text, nullable=False),
    Column("band_since", Date, nullable=False),  # the score day the account entered `band`
    Column("expected_recovery_minor", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("expected_recovery_reporting_minor", BigInteger),  # None: no rate for `currency`
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
