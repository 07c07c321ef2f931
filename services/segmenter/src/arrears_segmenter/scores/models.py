"""The latest score of each account (`segmenter.account_scores`, revision 0011) and its typed row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Date, DateTime, Float, Integer, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from ..accounts.models import metadata

account_scores = Table(
    "account_scores",
    metadata,
    Column("account_id", Text, primary_key=True),
    Column("scored_on", Date, nullable=False),
    Column("scored_at", DateTime(timezone=True), nullable=False),
    Column("model_version", Text, nullable=False),
    Column("risk_score", Integer, nullable=False),
    Column("band", Text, nullable=False),
    Column("p_pay_14d", Float, nullable=False),
    Column("dropout_risk", Float, nullable=False),
    Column("expected_recovery_minor", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("best_channel", Text),
    Column("best_hour", Integer),
    Column("reasons", JSONB, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True, slots=True)
class Score:
    """One account's latest score, as the planner and the timer loop read it."""

    account_id: str
    scored_on: date
    model_version: str
    risk_score: int
    band: str
    best_channel: str | None
    best_hour: int | None
    reasons: list[dict[str, Any]]

    def fresh(self, now: datetime, max_age_days: int) -> bool:
        """Made no more than `max_age_days` UTC days before `now` (a score from the future is not used)."""
        age = (now.date() - self.scored_on).days
        return 0 <= age <= max_age_days
