"""Collection metrics API: read snapshots (viewer), snapshot a day now (admin; idempotent)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends, Query

from ..auth.deps import requires
from ..auth.service import Principal
from .service import read, snapshot


def make_router() -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(prefix="/collection-metrics", tags=["metrics"])

        @router.get("")
        async def metrics_read(
            start: date = Query(..., alias="from"),
            end: date = Query(..., alias="to"),
            scope: str | None = Query(None, pattern="^(overall|campaign|aging_bucket|collector)$"),
            _: Principal = Depends(requires(get_context, "viewer")),
        ) -> list[dict[str, Any]]:
            """Daily snapshots between two days (inclusive), for trends."""
            async with get_context().engine.connect() as conn:
                return await read(conn, start, end, scope)

        @router.post("/snapshot")
        async def metrics_snapshot(
            day: date, _: Principal = Depends(requires(get_context, "admin"))
        ) -> dict[str, int]:
            async with get_context().engine.begin() as conn:
                return {"written": await snapshot(conn, day)}

        return router

    return factory
