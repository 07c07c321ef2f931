"""The console page: one server-rendered HTML document, every value escaped, no external assets."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from urllib.parse import quote

from arrears_shared.money import format_minor

from ..readmodels.models import AgingReport, DlqList, RejectList, Summary, Timeline

CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 24px;display:flex;justify-content:space-between;align-items:center}
header h1{font-size:18px;margin:0} header span{opacity:.7;font-size:12px}
main{padding:16px 24px;display:grid;gap:16px}
section{background:#fff;border-radius:8px;padding:12px 16px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
h2{font-size:15px;margin:0 0 8px}
.tiles{display:grid;grid-template-columns:repeat(auto-fit,minmax(140px,1fr));gap:12px}
.tile{background:#fff;border-radius:8px;padding:10px 14px;box-shadow:0 1px 2px rgba(0,0,0,.08)}
.tile b{display:block;font-size:22px} .tile small{color:#667}
table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceef2}
th{font-weight:600;color:#556;font-size:12px;text-transform:uppercase} td.num{text-align:right;font-variant-numeric:tabular-nums}
.empty{color:#889;font-style:italic} .note{color:#667;font-size:12px;margin:6px 0 0}
"""


def _money(minor: int, currency: str) -> str:
    return format_minor(minor, currency)


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if i in numeric else ''}>{escape(str(v))}</td>" for i, v in enumerate(r))
        + "</tr>"
        for r in rows
    )
    if not body:
        body = f'<tr><td class=empty colspan="{len(headers)}">nothing yet</td></tr>'
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _aging_table(report: AgingReport) -> str:
    """One row per currency in its own money, then the reporting-currency total of every priced currency."""
    cells = {(r.currency, r.bucket): r for r in report.rows}
    rep = report.reporting_currency
    rows = []
    for t in sorted(report.currencies, key=lambda t: t.currency):
        cur = t.currency
        row: list[object] = [cur]
        for b in report.buckets:
            c = cells.get((cur, b))
            row.append(f"{_money(c.balance_minor, cur)} ({c.accounts})" if c else "–")
        row.append(f"{_money(t.balance_minor, cur)} ({t.accounts})")
        row.append(_money(t.reporting_minor, rep) if t.reporting_minor is not None else "no rate")
        rows.append(row)
    if rows:
        total: list[object] = [f"total in {rep}"]
        total += [_money(report.reporting_by_bucket.get(b, 0), rep) for b in report.buckets]
        total += [_money(report.reporting_total_minor, rep), ""]
        rows.append(total)
    table = _table(
        ["currency", *report.buckets, "total", f"in {rep}"], rows, set(range(1, len(report.buckets) + 3))
    )
    note = f"{rep} figures at the rates of {report.rates_as_of.isoformat()}"
    if report.unpriced_currencies:
        note += f"; left out of the {rep} totals (no rate): {', '.join(report.unpriced_currencies)}"
    return f"{table}<p class=note>{escape(note)}</p>"


def _time(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else ""


def render(
    *,
    aging: AgingReport,
    summary: Summary,
    timeline: Timeline | None,
    dlq: DlqList | None,
    rejects: RejectList | None,
    refresh_s: int,
    user: str = "",
    role: str = "",
    csrf: str = "",
) -> str:
    """Sections the signed-in person may not see (None) are left out, not shown empty."""
    sent = sum(c.sent for c in summary.messages_by_channel.values())
    failed = sum(c.failed for c in summary.messages_by_channel.values())
    tiles = [
        ("accounts", summary.accounts),
        ("notices due", summary.notices_due),
        ("messages sent", sent),
        ("sends failed", failed),
        ("replies", sum(summary.replies_by_intent.values())),
        ("open cases", summary.open_cases),
        ("rejects", summary.rejects),
        ("dead letters", summary.dlq),
    ]
    tiles_html = "".join(f'<div class="tile"><b>{v:,}</b><small>{escape(k)}</small></div>' for k, v in tiles)
    channels = _table(
        ["channel", "sent", "failed", "suppressed"],
        [[ch, c.sent, c.failed, c.suppressed] for ch, c in sorted(summary.messages_by_channel.items())],
        {1, 2, 3},
    )
    intents = _table(["intent", "replies"], sorted(summary.replies_by_intent.items()), {1})
    topics = _table(["topic", "events"], sorted(summary.events_per_topic.items()), {1})
    sections = []
    if timeline is not None:
        recent = _table(
            ["time", "account", "event", "summary"],
            [[_time(i.at), i.account_id, i.topic, i.summary] for i in timeline.items],
        )
        sections.append(f"<section><h2>Recent activity</h2>{recent}</section>")
    if dlq is not None:
        dlq_html = _table(
            ["recorded", "dlq topic", "offset", "type", "service", "attempts", "reason"],
            [
                [_time(d.recorded_at), d.topic, f"{d.partition}:{d.offset}", d.ce_type or "", d.service or "",
                 d.attempts if d.attempts is not None else "", d.reason or ""]
                for d in dlq.items
            ],
        )  # fmt: skip
        sections.append(f"<section><h2>Dead letters ({dlq.count:,})</h2>{dlq_html}</section>")
    if rejects is not None:
        rejects_html = _table(
            ["time", "source", "row", "column", "reason"],
            [[_time(r.rejected_at), r.source, r.row_number, r.column or "", r.reason] for r in rejects.items],
        )
        sections.append(f"<section><h2>Ingest rejects ({rejects.count:,})</h2>{rejects_html}</section>")
    signed_in = (
        f' · {escape(user)} ({escape(role)}) <form method="post" style="display:inline" '
        f'action="/logout?csrf_token={quote(csrf)}"><button style="font-size:11px">Sign out</button></form>'
        if user
        else ""
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{int(refresh_s)}">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Arrears console</title>
<style>{CSS}</style></head>
<body><header><h1>Arrears console</h1><span>aging as of {escape(aging.as_of.isoformat())} ·
refreshes every {int(refresh_s)} s · <a style="color:#9cf" href="/docs">API</a>{signed_in}</span></header>
<main>
<div class="tiles">{tiles_html}</div>
<section><h2>Aging report</h2>{_aging_table(aging)}</section>
<section style="display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:16px">
<div><h2>Sends by channel</h2>{channels}</div><div><h2>Replies by intent</h2>{intents}</div>
<div><h2>Events per topic</h2>{topics}</div></section>
{"".join(sections)}
</main></body></html>"""
