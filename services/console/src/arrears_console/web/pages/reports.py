"""Reports: the weekly KPI reports and monthly scorecards escalation generated on schedule (stored there as
figures), each readable here and downloadable as XLSX or PDF; a supervisor can generate a missed period.
Every call goes to escalation's `/reports` API as the signed-in person."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from arrears_shared.auth import Principal, requires
from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from ..templating import page
from ..upstream import UpstreamError
from .common import ContextGetter, back, upstreams

ReportId = Path(pattern=r"^(weekly_kpi|monthly_scorecard)-\d{4}-\d{2}-\d{2}$")
KINDS = {"weekly_kpi": "Weekly KPI report", "monthly_scorecard": "Monthly scorecard"}
STATUS_CLASS = {"met": "good", "near": "warn", "missed": "bad"}


def pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f}%"


def figure(metric: str, v: Any) -> str:
    if v is None:
        return "—"
    return f"{v:,.0f}" if metric == "tasks_completed" else pct(v)


def router(get_context: ContextGetter) -> APIRouter:
    r = APIRouter(tags=["web"], include_in_schema=False)
    reader = Depends(requires("reports.read"))

    @r.get("/reports", response_class=HTMLResponse)
    async def list_(request: Request, who: Principal = reader) -> HTMLResponse:
        try:
            found = await upstreams(get_context()).call(request, who, "escalation", "GET", "/reports")
        except UpstreamError as e:
            return page(
                request, who, "reports.html", status=502, reports=[], unavailable=e.detail, kinds=KINDS
            )
        return page(request, who, "reports.html", reports=found or [], unavailable="", kinds=KINDS)

    @r.get("/reports/{report_id}", response_class=HTMLResponse)
    async def detail(request: Request, report_id: str = ReportId, who: Principal = reader) -> HTMLResponse:
        try:
            found = await upstreams(get_context()).call(
                request, who, "escalation", "GET", f"/reports/{report_id}"
            )
        except UpstreamError as e:
            return page(
                request, who, "error.html", status=e.status if e.status == 404 else 502, message=e.detail
            )
        return page(
            request,
            who,
            "report.html",
            report=found,
            figures=found["figures"],
            pct=pct,
            figure=figure,
            status_class=STATUS_CLASS,
        )

    @r.get("/reports/{report_id}/download")
    async def download(
        request: Request,
        report_id: str = ReportId,
        format: Literal["xlsx", "pdf"] = Query("xlsx"),
        who: Principal = reader,
    ) -> Response:
        try:
            got = await upstreams(get_context()).fetch(
                request, who, "escalation", f"/reports/{report_id}/file", {"format": format}
            )
        except UpstreamError as e:
            return Response(
                e.detail, status_code=e.status if e.status == 404 else 502, media_type="text/plain"
            )
        return Response(
            got.content,
            media_type=got.headers.get("content-type", "application/octet-stream"),
            headers={"Content-Disposition": f'attachment; filename="{report_id}.{format}"'},
        )

    @r.post("/reports/generate")
    async def generate(
        request: Request,
        kind: Literal["weekly_kpi", "monthly_scorecard"] = Form(...),
        period_start: date = Form(...),
        who: Principal = Depends(requires("reports.generate")),
    ) -> Response:
        body = {"kind": kind, "period_start": period_start.isoformat()}
        try:
            made = await upstreams(get_context()).call(
                request, who, "escalation", "POST", "/reports/generate", json=body
            )
        except UpstreamError as e:
            return back("/reports", error=f"report not generated: {e.detail}")
        return back(
            "/reports", flash=f"{KINDS[kind]} {made['period_start']} to {made['period_end']} is ready"
        )

    return r
