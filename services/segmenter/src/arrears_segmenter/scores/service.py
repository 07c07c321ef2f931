"""Store the scores of a batch (the latest per account wins) and read them back for a set of accounts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from arrears_shared.events import AccountScored, latest_per_account
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import bulk
from ..accounts.account import Account
from .choice import ScoreUse, band_for, fresh_score
from .models import Score, account_scores

COLUMNS = [c.name for c in account_scores.columns if c.name != "account_id"]


async def store_scores(conn: AsyncConnection, events: Sequence[AccountScored], now: datetime) -> list[str]:
    """Keep each account's latest score: a score replaces the stored one only when it is not older
    (`scored_on`, then `scored_at`), so a late or replayed older score changes nothing. Returns the ids of
    the accounts whose score changed."""
    rows = [
        {
            "account_id": ev.account_id,
            "scored_on": ev.scored_on,
            "scored_at": ev.scored_at,
            "model_version": ev.model_version,
            "risk_score": ev.risk_score,
            "band": ev.band.value,
            "p_pay_14d": ev.p_pay_14d,
            "dropout_risk": ev.dropout_risk,
            "expected_recovery_minor": ev.expected_recovery_minor,
            "currency": ev.currency,
            "best_channel": ev.best_channel,
            "best_hour": ev.best_hour,
            "reasons": [r.model_dump() for r in ev.reasons],
            "received_at": now,
        }
        for ev in latest_per_account(events)
    ]
    changed = await bulk.insert(
        conn,
        account_scores,
        rows,  # in account order: a stable lock order across replicas
        conflict=["account_id"],
        update=COLUMNS,
        update_where="(t.scored_on, t.scored_at) <= (EXCLUDED.scored_on, EXCLUDED.scored_at)",
        returning="account_id",
    )
    return [r[0] for r in changed]


async def latest_scores(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, Score]:
    """The stored score of each of these accounts that has one."""
    if not ids:
        return {}
    c = account_scores.c
    rows = await conn.execute(
        select(
            c.account_id,
            c.scored_on,
            c.model_version,
            c.risk_score,
            c.band,
            c.best_channel,
            c.best_hour,
            c.reasons,
        ).where(bulk.in_ids(c.account_id, list(ids)))
    )
    return {r.account_id: Score(*r) for r in rows}


async def current_bands(
    conn: AsyncConnection, accts: Sequence[Account], now: datetime, use: ScoreUse | None
) -> dict[str, str]:
    """Each account's risk band now (scores.choice.band_for): its fresh model score's, else its rule
    score's. Without `use` (no scoring) the rule score's."""
    scores = await latest_scores(conn, [a.account_id for a in accts]) if use is not None else {}
    return {
        a.account_id: band_for(a, fresh_score(scores.get(a.account_id), now, use) if use else None)
        for a in accts
    }
