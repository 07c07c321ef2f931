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

from .service import campaign_collected, read_page, snapshot
from .targets import KpiTarget, KpiTargets


def make_router(targets: list[KpiTarget] | None = None) -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(prefix="/collection-metrics", tags=["metrics"])

        @router.get("/targets", response_model=KpiTargets)
        async def metrics_targets(_: Principal = Depends(requires("reports.read"))) -> KpiTargets:
            """The KPI targets in force (configuration) with the threshold below which a figure is no longer
            `near` but `missed`; a figure at or above `target` is `met`."""
            return KpiTargets(targets=list(targets or []))

        @router.get("/campaigns", responses=paging.RESPONSES)
        async def metrics_campaigns(
            request: Request,
            response: Response,
            start: IsoDate = Query(..., alias="from"),
            end: IsoDate = Query(..., alias="to"),
            limit: int = Query(
                1000, ge=1, le=5000, description="At most this many (campaign, currency) rows"
            ),
            cursor: str | None = paging.CURSOR_QUERY,
            _: Principal = Depends(requires("reports.read")),
        ) -> list[dict[str, Any]]:
            """Collected per campaign and currency between two days (inclusive), live, attributed as the
            collection metrics attribute payments; with the balance the paying accounts still owe. Ordered by
            campaign and currency."""
            async with get_context().engine.connect() as conn:
                rows = await campaign_collected(conn, start, end)
            key = [(str(r["campaign_id"]), str(r["currency"] or "")) for r in rows]
            order = sorted(range(len(rows)), key=key.__getitem__)
            if cursor:
                last = tuple(paging.decode(cursor, [str, str]))
                order = [i for i in order if key[i] > last]
            page = order[:limit]
            paging.announce(request, response, paging.encode(key[page[-1]]) if len(order) > limit else None)
            return [rows[i] for i in page]

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
