"""No-response timer loop."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from arrears_shared.service import Context
from arrears_shared.stream.transaction import transaction
from sqlalchemy.ext.asyncio import AsyncEngine

from ..collection.scheduled import snapshot_if_due
from ..deps import Deps
from ..tasks.service import check_sla
from ..teams.service import republish_if_due
from .flows import fire_due

log = logging.getLogger(__name__)


async def tick(engine: AsyncEngine, schema: str, source: str, deps: Deps, now: datetime | None = None) -> int:
    at = now or deps.clock.now()
    async with transaction(engine, schema, source) as tx:
        n = await fire_due(tx.conn, tx, deps, at)
        await check_sla(tx.conn, deps, at)
        return n


def make_timer_loop(
    deps: Deps, tick_s: float, metrics_hour_utc: int = 1
) -> Callable[[Context], Awaitable[None]]:
    async def timer_loop(ctx: Context) -> None:
        while True:
            handled = 0
            try:
                async with ctx.transaction() as tx:
                    at = deps.clock.now()
                    handled = await fire_due(tx.conn, tx, deps, at)
                    await check_sla(tx.conn, deps, at)
                    await snapshot_if_due(tx.conn, at, metrics_hour_utc)
                    await republish_if_due(tx, at, deps.calendars_republish)
            except Exception:
                log.exception("escalation timer tick failed; retrying next tick")
            if handled >= deps.timer_batch:
                continue
            if not await ctx.sleep(tick_s):
                return

    return timer_loop
