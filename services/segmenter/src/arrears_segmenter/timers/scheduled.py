"""The timer loop: every tick, fire due timers in one transaction per batch. Several workers per replica and
several replicas share the due timers through SKIP LOCKED."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from arrears_shared.service import Context
from arrears_shared.stream.transaction import transaction
from sqlalchemy.ext.asyncio import AsyncEngine

from ..deps import Deps
from ..schedule.service import adopt_configured
from .service import fire_due

log = logging.getLogger(__name__)


async def tick(engine: AsyncEngine, schema: str, source: str, deps: Deps, now: datetime | None = None) -> int:
    """One pass: returns how many timers were handled (a full batch means call again)."""
    async with transaction(engine, schema, source) as tx:
        return await fire_due(tx.conn, tx, deps, now or deps.clock.now())


def make_timer_loop(deps: Deps, tick_s: float, workers: int = 1) -> Callable[[Context], Awaitable[None]]:
    async def timer_loop(ctx: Context) -> None:
        try:
            async with ctx.transaction() as tx:
                loaded = await adopt_configured(tx.conn, deps, deps.clock.now())
            if loaded is not None:
                log.info("configured policy adopted", extra=loaded.model_dump())
        except Exception:
            log.exception("could not adopt the configured policy; the stored active version stays")

        async def worker() -> None:
            while True:
                handled = 0
                try:
                    async with ctx.transaction() as tx:
                        handled = await fire_due(tx.conn, tx, deps, deps.clock.now())
                except Exception:
                    log.exception("timer tick failed; retrying next tick")
                if handled >= deps.timer_batch and not ctx.stopping.is_set():
                    continue  # backlog: go again at once
                if not await ctx.sleep(tick_s):
                    return

        await asyncio.gather(*(worker() for _ in range(max(1, workers))))

    return timer_loop
