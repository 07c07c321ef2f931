"""`GET /intents/model` (audit.read): the model classifying replies in this replica, its test metrics and
the thresholds; `GET /intents/models` (audit.read): every version with its status and the retrain gate's
decision. Retraining is `arrears intents retrain` (it needs the corpus and a few seconds of CPU)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arrears_shared import paging
from arrears_shared.auth import requires
from arrears_shared.service import Context
from fastapi import APIRouter, Depends, Query, Request, Response

from .registry import ACTIVE, page_models


def intents_router(get_context: Callable[[], Context]) -> APIRouter:
    router = APIRouter(tags=["intents"], dependencies=[Depends(requires("audit.read"))])

    @router.get("/intents/model")
    async def model() -> dict[str, Any]:
        m = ACTIVE.classifier.model
        return {
            "version": m.version,
            "metrics": m.meta.get("metrics", {}),
            "trained_at": m.meta.get("trained_at"),
            "train_size": m.meta.get("train_size"),
            "review_below": ACTIVE.review_below,
            "possible_opt_out_at": ACTIVE.possible_opt_out_at,
            "opt_out_at": ACTIVE.opt_out_at,
        }

    @router.get("/intents/models", responses=paging.RESPONSES)
    async def models(
        request: Request,
        response: Response,
        limit: int = Query(50, ge=1, le=500),
        cursor: str | None = paging.CURSOR_QUERY,
    ) -> list[dict[str, Any]]:
        ctx = get_context()
        async with ctx.engine.connect() as conn:
            found, after = await page_models(conn, ctx.schema, limit, cursor)
        paging.announce(request, response, after)
        return found

    return router
