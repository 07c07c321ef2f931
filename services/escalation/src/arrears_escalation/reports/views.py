"""Reports API: list and read (reports.read), download as XLSX or PDF (reports.read), generate a period now
(reports.generate; idempotent: an existing report is returned as it is; audited)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from arrears_shared import paging
from arrears_shared.audit import record
from arrears_shared.auth import Principal, requires
from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from ..collection.targets import KpiTarget
from ..deps import Deps
from .models import GenerateReport, Kind, ReportDetail, ReportsConfig, ReportView, period_of, report_id
from .render import to_pdf, to_xlsx
from .service import generate, get_report, list_reports

MEDIA = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pdf": "application/pdf",
}


def make_router(deps: Deps, cfg: ReportsConfig, targets: list[KpiTarget]) -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(prefix="/reports", tags=["reports"])
        reader = Depends(requires("reports.read"))

        @router.get("", response_model=list[ReportView], responses=paging.RESPONSES)
        async def reports_list(
            request: Request,
            response: Response,
            kind: Kind | None = None,
            limit: int = Query(200, ge=1, le=1000),
            cursor: str | None = paging.CURSOR_QUERY,
            _: Principal = reader,
        ) -> list[ReportView]:
            """Stored reports, newest period first."""
            async with get_context().engine.connect() as conn:
                found, after = await list_reports(conn, kind, limit, cursor)
            paging.announce(request, response, after)
            return found

        @router.get("/{report_id}", response_model=ReportDetail)
        async def report_get(report_id: str, _: Principal = reader) -> ReportDetail:
            async with get_context().engine.connect() as conn:
                found = await get_report(conn, report_id)
            if found is None:
                raise HTTPException(404, "report not found")
            return found

        @router.get("/{report_id}/file", response_class=Response)
        async def report_file(
            report_id: str, format: Literal["xlsx", "pdf"] = Query("xlsx"), _: Principal = reader
        ) -> Response:
            """The report as a file, rendered from its stored figures."""
            async with get_context().engine.connect() as conn:
                found = await get_report(conn, report_id)
            if found is None:
                raise HTTPException(404, "report not found")
            body = to_xlsx(found.figures) if format == "xlsx" else to_pdf(found.figures)
            return Response(
                body,
                media_type=MEDIA[format],
                headers={"Content-Disposition": f'attachment; filename="{report_id}.{format}"'},
            )

        @router.post("/generate", response_model=ReportView)
        async def report_generate(
            body: GenerateReport, who: Principal = Depends(requires("reports.generate"))
        ) -> ReportView:
            """Generate the report of one period now (e.g. a period the schedule missed); the one that exists
            is returned unchanged. Sent to the distribution list like a scheduled one."""
            try:
                start, end = period_of(body.kind, body.period_start)
            except ValueError as e:
                raise HTTPException(422, str(e)) from None
            if end >= deps.clock.now().date():
                raise HTTPException(422, "that period has not ended yet")
            ctx = get_context()
            async with ctx.transaction() as tx:
                made = await generate(
                    tx.conn,
                    body.kind,
                    start,
                    end,
                    targets=targets,
                    recipients=cfg.recipients,
                    now=deps.clock.now(),
                    by=who.name,
                )
                if made is not None:
                    await record(
                        tx.conn, ctx.schema, who, "report.generate", "report", made.report_id,
                        after={"kind": body.kind, "period_start": start.isoformat()},
                    )  # fmt: skip
                    return made
                found = await get_report(tx.conn, report_id(body.kind, start))
            if found is None:
                raise HTTPException(409, "another replica is generating that report; try again")
            return ReportView.model_validate(found.model_dump(exclude={"figures"}))

        return router

    return factory
