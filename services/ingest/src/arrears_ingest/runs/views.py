"""HTTP API: run the sheet now, list runs, list/export rejects. No business logic here."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable

from arrears_shared import paging
from arrears_shared.auth import Principal, requires
from arrears_shared.service import Context
from arrears_shared.spreadsheet import cell_safe as csv_safe
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from sqlalchemy import text

from ..validation.fixes import fix_for
from . import service
from .audit import audit_run
from .models import RejectItem, RejectList, RejectSource, RunList, RunSummary

CSV_COLUMNS = (
    "row_number",
    "account_id",
    "column",
    "value",
    "reason",
    "fix",
    "balance_minor",
    "currency",
    "batch_id",
    "source",
)


def ingestor(ctx: Context) -> service.SheetIngestor:
    ing = ctx.extra.get("sheet_ingestor")
    if not isinstance(ing, service.SheetIngestor):
        raise HTTPException(503, "ingest is starting")
    return ing


async def fetch_rejects(ctx: Context, source: str | None, limit: int | None, offset: int) -> RejectList:
    where = "WHERE source = :s" if source else ""
    async with ctx.engine.connect() as conn:
        total = (
            await conn.execute(text(f"SELECT count(*) FROM {ctx.schema}.rejects {where}"), {"s": source})
        ).scalar_one()
        rows = await conn.execute(
            text(
                f'SELECT source, batch_id, row_number, account_id, "column", value, reason, balance_minor, '
                f"currency, rejected_at FROM {ctx.schema}.rejects {where} "
                "ORDER BY balance_minor DESC NULLS LAST, source, row_number, id LIMIT :lim OFFSET :off"
            ),
            {"s": source, "lim": limit, "off": offset},
        )
        items = [
            RejectItem.model_validate(
                {**r._mapping, "batch_id": str(r.batch_id), "fix": fix_for(r.reason, r.column)}
            )
            for r in rows
        ]
    return RejectList(source=source or "all", total=total, items=items)


def router(get_context: Callable[[], Context]) -> APIRouter:
    r = APIRouter(prefix="/ingest", tags=["ingest"])

    @r.post(
        "/sheet",
        response_model=RunSummary,
        responses={409: {"description": "a run is already in progress"}, 503: {"description": "starting"}},
    )
    async def run_sheet(who: Principal = Depends(requires("ingest.run"))) -> RunSummary:
        """Read the sheet now. A sheet that cannot be read returns the failed run (status "failed")."""
        ctx = get_context()
        ing = ingestor(ctx)
        if not ctx.settings.sheets_spreadsheet_id:  # type: ignore[attr-defined]
            raise HTTPException(409, "sheet source disabled: ARREARS_SHEETS_SPREADSHEET_ID is not set")
        try:
            summary = await ing.run("api")
        except service.RunInProgress as e:
            raise HTTPException(409, str(e)) from e
        await audit_run(ctx, who, "ingest.sheet_run", summary)
        return summary

    read = [Depends(requires("ingest.read"))]

    @r.get("/runs", response_model=RunList, dependencies=read, responses=paging.RESPONSES)
    async def runs(
        request: Request,
        response: Response,
        limit: int = Query(50, ge=1, le=1000),
        cursor: str | None = paging.CURSOR_QUERY,
    ) -> RunList:
        ctx = get_context()
        found, after = await service.list_runs(ctx.engine, ctx.schema, limit, cursor)
        paging.announce(request, response, after)
        return RunList(items=found)

    @r.get("/rejects", response_model=RejectList, dependencies=read)
    async def rejects(
        limit: int = Query(500, ge=1, le=10_000),
        offset: int = Query(0, ge=0, le=2**63 - 1),  # a PostgreSQL bigint
        source: RejectSource | None = Query(None, description="Only this source (default: all)"),
    ) -> RejectList:
        """Current rejects, highest balance (impact) first. Sheet and upload rejects are those of the
        source's latest run; payment rejects accumulate."""
        return await fetch_rejects(get_context(), source, limit, offset)

    @r.get(
        "/rejects.csv",
        response_class=Response,
        responses={200: {"content": {"text/csv": {}}}},
        dependencies=read,
    )
    async def rejects_csv(
        source: RejectSource | None = Query(None, description="Only this source (default: all)"),
    ) -> Response:
        """All current rejects as CSV, highest balance first, safe to open in a spreadsheet."""
        data = await fetch_rejects(get_context(), source, None, 0)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(CSV_COLUMNS)
        for item in data.items:
            w.writerow([csv_safe(getattr(item, c)) for c in CSV_COLUMNS])
        return Response(
            buf.getvalue(),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="ingest-rejects.csv"'},
        )

    return r
