"""Aging dashboard: buckets x currency as a server-rendered SVG chart and a table, reporting-currency totals,
drill-down to the account list, and the same view exported as CSV or XLSX that no spreadsheet can run as a
formula (arrears_shared.spreadsheet). Below, the trend over a chosen number of days from the console's daily
aging snapshots (readmodels.aging_history), also served alone as the `?fragment=trend` fragment."""

from __future__ import annotations

import io
from datetime import timedelta
from html import escape
from typing import Any

from arrears_shared.auth import Principal, requires
from arrears_shared.money import configured_rates, format_minor
from arrears_shared.spreadsheet import FORMULA_PREFIXES, cell_safe, csv_text
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from openpyxl import Workbook

from ...readmodels import service
from ...readmodels.aging_history import AgingTrend, aging_trend
from ...readmodels.models import AgingReport
from ...readmodels.views import today_utc
from ..charts import Series, line_chart
from ..templating import env, page
from .common import ContextGetter

HEADER = (
    "bucket",
    "currency",
    "accounts",
    "balance",
    "balance_minor",
    "reporting_currency",
    "reporting_minor",
)


def rows(report: AgingReport) -> list[list[Any]]:
    return [
        [r.bucket, r.currency, r.accounts, format_minor(r.balance_minor, r.currency), r.balance_minor,
         report.reporting_currency, r.reporting_minor]
        for r in report.rows
    ]  # fmt: skip


def chart_svg(report: AgingReport) -> str:
    """Outstanding per bucket in the reporting currency: one bar each, labelled, with a text alternative."""
    values = [report.reporting_by_bucket.get(b, 0) for b in report.buckets]
    top = max(values) or 1
    width, height, pad = 640, 220, 30
    bar = (width - 2 * pad) / max(1, len(values))
    parts = [
        f'<svg viewBox="0 0 {width} {height + 40}" role="img" aria-labelledby="chart-title" '
        'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">Outstanding by aging bucket, in {escape(report.reporting_currency)}</title>',
    ]
    for i, (bucket, v) in enumerate(zip(report.buckets, values, strict=True)):
        h = round((height - pad) * v / top)
        x = pad + i * bar
        label = escape(format_minor(v, report.reporting_currency))
        parts.append(
            f'<rect x="{x + 6:.0f}" y="{height - h}" width="{bar - 12:.0f}" height="{h}" fill="#1f5fbf">'
            f"<title>{escape(bucket)}: {label}</title></rect>"
            f'<text x="{x + bar / 2:.0f}" y="{height + 16}" text-anchor="middle" font-size="12">{escape(bucket)}</text>'
            f'<text x="{x + bar / 2:.0f}" y="{max(12, height - h - 4)}" text-anchor="middle" font-size="11">{label}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


TREND_PERIODS = (7, 30, 90, 365)


def trend_svg(trend: AgingTrend) -> str:
    """Outstanding per bucket over the snapshot days, in the reporting currency, and the total."""
    cur = trend.reporting_currency
    series = [Series(b, trend.series(b)) for b in trend.buckets]
    series.append(Series("Total", trend.totals()))
    return line_chart(
        "aging-trend-chart",
        f"Outstanding by aging bucket over time, in {cur}",
        trend.days,
        series,
        lambda v: format_minor(round(v), cur),
    )


def xlsx_bytes(report: AgingReport) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.title = "aging"
    ws.append([cell_safe(h) for h in HEADER])
    for row in rows(report):
        ws.append([v if isinstance(v, int | float) else cell_safe(v) for v in row])
    for cells in ws.iter_rows():
        for cell in cells:
            if isinstance(cell.value, str):
                cell.data_type = "s"  # text, never a formula, whatever it starts with
                if cell.value.startswith(FORMULA_PREFIXES):  # cannot happen after cell_safe; kept as a guard
                    cell.value = "'" + cell.value
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def router(get_context: ContextGetter) -> APIRouter:
    r = APIRouter(tags=["web"], include_in_schema=False)
    reader = Depends(requires("reports.read"))

    async def report() -> AgingReport:
        ctx = get_context()
        async with ctx.engine.connect() as conn:
            return await service.aging(conn, ctx.schema, today_utc())

    async def trend(days: int, reporting_currency: str) -> AgingTrend:
        ctx = get_context()
        end = today_utc()
        async with ctx.engine.connect() as conn:
            return await aging_trend(
                conn, ctx.schema, end - timedelta(days=days - 1), end, reporting_currency
            )

    @r.get("/aging", response_class=HTMLResponse)
    async def aging(
        request: Request,
        who: Principal = reader,
        fragment: str | None = Query(None, pattern="^trend$", description="Only the trend section"),
        days: int = Query(30, ge=2, le=366, description="Days of trend, ending today"),
    ) -> HTMLResponse:
        tr = await trend(days, configured_rates().reporting_currency)
        trend_ctx: dict[str, Any] = {
            "trend": tr,
            "trend_chart": trend_svg(tr),
            "days": days,
            "periods": TREND_PERIODS,
        }
        if fragment == "trend":
            return HTMLResponse(env.get_template("aging_trend.html").render(**trend_ctx))
        rep = await report()
        cells = {(row.currency, row.bucket): row for row in rep.rows}
        return page(request, who, "aging.html", report=rep, cells=cells, chart=chart_svg(rep), **trend_ctx)

    @r.get("/aging.csv")
    async def aging_csv(who: Principal = reader) -> Response:
        rep = await report()
        return Response(
            csv_text(HEADER, rows(rep)),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="aging-{rep.as_of}.csv"'},
        )

    @r.get("/aging.xlsx")
    async def aging_xlsx(who: Principal = reader) -> Response:
        rep = await report()
        return Response(
            xlsx_bytes(rep),
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="aging-{rep.as_of}.xlsx"'},
        )

    return r
