"""Daily snapshot: after ARREARS_ESCALATION_METRICS_HOUR_UTC, yesterday's metrics are stored (once)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import metrics
from ..cases.models import SCHEMA
from .service import snapshot


async def snapshot_if_due(conn: AsyncConnection, now: datetime, hour_utc: int) -> bool:
    if now.hour < hour_utc:
        return False
    day = now.date() - timedelta(days=1)
    done = (
        await conn.execute(
            text(f"SELECT 1 FROM {SCHEMA}.metric_snapshots WHERE day = :d LIMIT 1"), {"d": day}
        )
    ).first()
    if done:
        return False
    await snapshot(conn, day)
    for r in (
        await conn.execute(
            text(f"SELECT metric, value FROM {SCHEMA}.metric_snapshots WHERE day = :d AND scope = 'overall'"),
            {"d": day},
        )
    ).all():
        if r.value is not None:
            metrics.COLLECTION.labels(r.metric).set(r.value)
    return True
