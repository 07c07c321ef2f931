"""The dashboard's content, server-rendered, every value escaped (the layout is templates/base.html)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape

from arrears_shared.money import format_minor

from ..readmodels.models import AgingReport, DlqList, RejectList, Summary, Timeline


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
) -> str:
    """The dashboard's content (tiles, aging, outcomes, and the sections the person may see; those they may
    not see are None and left out, not shown empty). The layout is the console's base template."""
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
    return f"""<div class="tiles">{tiles_html}</div>
<section><h2>Aging report</h2>{_aging_table(aging)}</section>
<section style="display:grid;grid-template-columns:repeat(auto-fit,minmax(260px,1fr));gap:16px">
<div><h2>Sends by channel</h2>{channels}</div><div><h2>Replies by intent</h2>{intents}</div>
<div><h2>Events per topic</h2>{topics}</div></section>
{"".join(sections)}"""
