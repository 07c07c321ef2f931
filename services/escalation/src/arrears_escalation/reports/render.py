"""A stored report's figures as files, rendered on demand (the same figures always give the same tables):
XLSX with openpyxl (one sheet per section) and PDF with reportlab (tables). Every cell that could start a
formula is written as text (spreadsheet formula injection: campaign ids and collector names are free text)."""

from __future__ import annotations

import io
from typing import Any

from arrears_shared.money import format_minor

from .figures import KPIS, LABELS, fmt

# openpyxl and reportlab are imported when a file is rendered, not when the service starts (~1 s of import)

STATUS_WORD = {"met": "met", "near": "near", "missed": "MISSED", "no_data": "no data", None: ""}


def _safe(v: Any) -> Any:
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


def sections(figures: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) of every table of the report, formatted for reading."""
    out: list[tuple[str, list[str], list[list[str]]]] = []
    out.append(
        (
            "KPIs against targets",
            ["KPI", "Figure", "Basis", "Target", "Status"],
            [
                [
                    k["label"],
                    fmt(k["metric"], k["value"]),
                    k["basis"],
                    fmt(k["metric"], k["target"]) if k["target"] is not None else "—",
                    STATUS_WORD.get(k["status"], str(k["status"])),
                ]
                for k in figures["overall"]
            ],
        )
    )
    scopes = [("campaigns", "By campaign", "Campaign"), ("aging_buckets", "By aging bucket", "Bucket")]
    if figures["kind"] == "monthly_scorecard":
        scopes.insert(0, ("collectors", "Scorecard by collector", "Collector"))
    else:
        scopes.append(("collectors", "By collector", "Collector"))
    for key, title, what in scopes:
        rows = figures.get(key) or {}
        metrics = [m for m, _, _ in KPIS if any(m in figs for figs in rows.values())]
        out.append(
            (
                title,
                [what, *(LABELS[m] for m in metrics)],
                [[sid, *(_cell(m, figs.get(m)) for m in metrics)] for sid, figs in rows.items()],
            )
        )
    collected = figures.get("collected") or {}
    out.append(
        (
            "Collected by campaign",
            ["Campaign", "Currency", "Collected", "Payments"],
            [
                [cid, c["currency"] or "—", _money(c["collected_minor"], c["currency"]), str(c["payments"])]
                for cid, items in collected.items()
                for c in items
            ],
        )
    )
    return out


def _cell(metric: str, fig: dict[str, Any] | None) -> str:
    if not fig:
        return "—"
    status = fig.get("status")
    return fmt(metric, fig["value"]) + (f" ({STATUS_WORD[status]})" if status in ("near", "missed") else "")


def _money(minor: int, currency: str | None) -> str:
    return format_minor(minor, currency) if currency else f"{minor:,}"


def to_xlsx(figures: dict[str, Any]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    wb = Workbook()
    summary = wb.active
    assert summary is not None
    summary.title = "Summary"
    summary.append([figures["title"]])
    summary["A1"].font = Font(bold=True, size=14)
    summary.append(["Period", f"{figures['period_start']} to {figures['period_end']}"])
    summary.append(["Generated", figures["generated_at"]])
    summary.append([])
    summary.append(["Red flags"])
    summary.cell(row=summary.max_row, column=1).font = Font(bold=True)
    for flag in figures["red_flags"] or ["none: every KPI met its target"]:
        summary.append([_safe(flag)])
    for title, header, rows in sections(figures):
        ws = wb.create_sheet(title[:31])
        ws.append(header)
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for row in rows:
            ws.append([_safe(v) for v in row])
        for i, _ in enumerate(header, start=1):
            ws.column_dimensions[ws.cell(row=1, column=i).column_letter].width = 24
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def to_pdf(figures: dict[str, Any]) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=landscape(A4),
        title=f"{figures['title']} {figures['period_start']} to {figures['period_end']}",
        author="Arrears",
    )
    styles = getSampleStyleSheet()
    story: list[Any] = [
        Paragraph(_esc(figures["title"]), styles["Title"]),
        Paragraph(
            _esc(
                f"Period {figures['period_start']} to {figures['period_end']} · generated {figures['generated_at']}"
            ),
            styles["Normal"],
        ),
        Spacer(1, 8),
        Paragraph("Red flags", styles["Heading2"]),
    ]
    for flag in figures["red_flags"] or ["none: every KPI met its target"]:
        story.append(Paragraph(_esc(flag), styles["Normal"]))
    for title, header, rows in sections(figures):
        story += [Spacer(1, 10), Paragraph(_esc(title), styles["Heading2"])]
        if not rows:
            story.append(Paragraph("No figures for this period.", styles["Normal"]))
            continue
        table = Table([header, *rows], repeatRows=1)
        table.setStyle(
            TableStyle(
                [
                    ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold"),
                    ("FONTSIZE", (0, 0), (-1, -1), 8),
                    ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
                    ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e8eef6")),
                ]
            )
        )
        story.append(table)
    doc.build(story)
    return buf.getvalue()


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
