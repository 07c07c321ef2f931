"""The model's scores (`account-scored`, issue #20): the latest per account, for the account page (the score
with its top reasons) and the account list's risk band filter."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime

from arrears_shared.events import AccountScored, latest_per_account
from arrears_shared.stream.transaction import Transaction
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


class ReasonView(BaseModel):
    feature: str
    label: str
    contribution: float = Field(description="Points of risk score this feature added (+) or removed (-)")


class ScoreView(BaseModel):
    account_id: str
    scored_on: date
    scored_at: datetime
    model_version: str
    risk_score: int
    band: str
    p_pay_14d: float
    dropout_risk: float
    expected_recovery: float
    expected_recovery_minor: int
    currency: str
    best_channel: str | None
    best_hour: int | None
    reasons: list[ReasonView]


async def upsert_scores(tx: Transaction, events: Sequence[AccountScored]) -> None:
    """Keep each account's latest score; an older (late or replayed) score changes nothing."""
    rows = latest_per_account(events)
    if not rows:
        return
    await tx.conn.execute(
        text(
            f"""INSERT INTO {tx.schema}.scores (account_id, scored_on, scored_at, model_version, risk_score, band,
                   p_pay_14d, dropout_risk, expected_recovery, expected_recovery_minor, currency, best_channel,
                   best_hour, reasons)
               SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(account_id text, scored_on date,
                   scored_at timestamptz, model_version text, risk_score int, band text, p_pay_14d float8,
                   dropout_risk float8, expected_recovery float8, expected_recovery_minor bigint, currency text,
                   best_channel text, best_hour int, reasons jsonb)
               ON CONFLICT (account_id) DO UPDATE SET scored_on = EXCLUDED.scored_on,
                   scored_at = EXCLUDED.scored_at, model_version = EXCLUDED.model_version,
                   risk_score = EXCLUDED.risk_score, band = EXCLUDED.band, p_pay_14d = EXCLUDED.p_pay_14d,
                   dropout_risk = EXCLUDED.dropout_risk, expected_recovery = EXCLUDED.expected_recovery,
                   expected_recovery_minor = EXCLUDED.expected_recovery_minor, currency = EXCLUDED.currency,
                   best_channel = EXCLUDED.best_channel, best_hour = EXCLUDED.best_hour,
                   reasons = EXCLUDED.reasons, updated_at = now()
               WHERE ({tx.schema}.scores.scored_on, {tx.schema}.scores.scored_at)
                     <= (EXCLUDED.scored_on, EXCLUDED.scored_at)"""
        ),
        {"rows": json.dumps([ev.model_dump(mode="json") for ev in rows])},
    )


async def score_of(conn: AsyncConnection, schema: str, account_id: str) -> ScoreView | None:
    row = (
        (await conn.execute(text(f"SELECT * FROM {schema}.scores WHERE account_id = :a"), {"a": account_id}))
        .mappings()
        .first()
    )
    return ScoreView.model_validate(dict(row)) if row else None


def summary(ev: AccountScored) -> str:
    """The timeline line of a score: the number, the band and its top reason."""
    top = f"; {ev.reasons[0].label}" if ev.reasons else ""
    return (
        f"scored {ev.risk_score} ({ev.band.value} risk) by model {ev.model_version}: "
        f"payment in 14 days {ev.p_pay_14d:.0%}{top}"
    )[:300]
