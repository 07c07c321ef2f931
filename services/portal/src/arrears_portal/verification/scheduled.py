"""Forgetting what the portal no longer needs: ended or expired visits after a day, verification attempts
after `KEEP_ATTEMPTS` (long past every lockout window; kept that long for the runbook's look at a lockout).
Idempotent deletes, so every replica may run it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from arrears_shared.service import Context
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger(__name__)
KEEP_SESSIONS = timedelta(days=1)
KEEP_ATTEMPTS = timedelta(days=30)
EVERY_S = 3600.0


async def prune(conn: AsyncConnection, schema: str, now: datetime) -> tuple[int, int]:
    sessions = await conn.execute(
        text(f"DELETE FROM {schema}.sessions WHERE coalesce(ended_at, expires_at) < :before"),
        {"before": now - KEEP_SESSIONS},
    )
    attempts = await conn.execute(
        text(f"DELETE FROM {schema}.verification_attempts WHERE at < :before"),
        {"before": now - KEEP_ATTEMPTS},
    )
    return sessions.rowcount, attempts.rowcount  # type: ignore[attr-defined]


async def prune_loop(ctx: Context) -> None:
    while await ctx.sleep(EVERY_S):
        try:
            async with ctx.engine.begin() as conn:
                s, a = await prune(conn, ctx.schema, datetime.now(UTC))
            if s or a:
                log.info("pruned portal visits and attempts", extra={"sessions": s, "attempts": a})
        except Exception:  # the database may be down: try again next time
            log.warning("pruning portal visits failed", exc_info=True)
