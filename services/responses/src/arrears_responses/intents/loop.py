"""Start-up and refresh of the active intent model (registry.ACTIVE) inside the responses service."""

from __future__ import annotations

import asyncio
import logging

from arrears_shared.service import Context

from ..settings import ResponsesSettings
from .registry import ACTIVE, ensure_registered

log = logging.getLogger(__name__)


async def load_active_model(ctx: Context) -> None:
    """on_start: register the shipped model if none is active, then load the active one."""
    s: ResponsesSettings = ctx.settings  # type: ignore[assignment]
    ACTIVE.configure(
        s.responses_intent_review_below, s.responses_intent_possible_opt_out_at, s.responses_intent_opt_out_at
    )
    async with ctx.engine.begin() as conn:
        await ensure_registered(conn, ctx.schema)
    async with ctx.engine.connect() as conn:
        await ACTIVE.refresh(conn, ctx.schema)


async def intent_model_loop(ctx: Context) -> None:
    """Pick up a model another replica or `arrears intents retrain` activated."""
    s: ResponsesSettings = ctx.settings  # type: ignore[assignment]
    while not ctx.stopping.is_set():
        try:
            await asyncio.wait_for(ctx.stopping.wait(), timeout=s.responses_intent_model_refresh_s)
        except TimeoutError:
            pass
        if ctx.stopping.is_set():
            return
        try:
            async with ctx.engine.connect() as conn:
                await ACTIVE.refresh(conn, ctx.schema)
        except Exception as e:  # the model in use stays; try again next time
            log.warning("intent model refresh failed", extra={"error": f"{type(e).__name__}: {e}"[:300]})


async def intent_model_ready(ctx: Context) -> tuple[bool, str]:
    """/readyz: which model classifies replies."""
    return True, ACTIVE.version
