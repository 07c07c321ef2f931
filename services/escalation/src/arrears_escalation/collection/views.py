"""Collection metrics API: read snapshots (reports.read), snapshot a day now (metrics.snapshot; idempotent, audited)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arrears_shared import paging
from arrears_shared.audit import record
from arrears_shared.auth import Principal, requires
from arrears_shared.isodate import IsoDate
from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends, Query, Request, Response

from .service import read_page, snapshot


def make_router() -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(prefix="/collection-metrics", tags=["metrics"])

        @router.get("", responses=paging.RESPONSES)
        async def metrics_read(
            request: Request,
            response: Response,
            start: IsoDate = Query(..., alias="from"),
            end: IsoDate = Query(..., alias="to"),
            scope: str | None = Query(None, pattern="^(overall|campaign|aging_bucket|collector)$"),
            limit: int = Query(
                2000, ge=1, le=10_000, description="At most this many snapshot rows, oldest first"
            ),
            cursor: str | None = paging.CURSOR_QUERY,
            _: Principal = Depends(requires("reports.read")),
        ) -> list[dict[str, Any]]:
            """Daily snapshots between two days (inclusive), for trends."""
            async with get_context().engine.connect() as conn:
                found, after = await read_page(conn, start, end, scope, limit, cursor)
            paging.announce(request, response, after)
            return found

        @router.post("/snapshot")
        async def metrics_snapshot(
            day: IsoDate, who: Principal = Depends(requires("metrics.snapshot"))
        ) -> dict[str, int]:
            ctx = get_context()
            async with ctx.transaction() as tx:
                written = await snapshot(tx.conn, day)
                await record(
                    tx.conn,
                    ctx.schema,
                    who,
                    "metrics.snapshot",
                    "collection_metrics",
                    day.isoformat(),
                    after={"written": written},
                )
            return {"written": written}

        return router

    return factory
