"""A report's figures, from the daily collection-metric snapshots of its period (each missing day is
snapshotted first, so a report never silently lacks a day): every KPI overall with its target and status,
by aging bucket, by campaign (collected and collection rate) and by collector (the scorecard), and the red
flags (KPIs that missed their target).

A period figure of a daily rate is sum(numerators) / sum(denominators) over the period; a rolling figure
(coverage: 30 days, recovery and response: 7 days) is its value on the last day of the period."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..cases.models import SCHEMA
from ..collection.service import campaign_collected, read, snapshot
from ..collection.targets import KpiTarget, by_metric
from .models import TITLES

# (metric, label, rolling) in the order reports show them
KPIS: tuple[tuple[str, str, bool], ...] = (
    ("days_in_arrears_coverage", "Days-in-arrears coverage", True),
    ("automated_notification_rate", "Automated notification rate", False),
    ("recovery_rate", "Recovery rate", True),
    ("collection_rate", "Collection rate", False),
    ("promise_fulfilment", "Promise fulfilment", False),
    ("promise_punctuality", "Promise punctuality", False),
    ("response_rate", "Response rate", True),
    ("tasks_completed", "Tasks completed", False),
)
LABELS = {m: label for m, label, _ in KPIS}
ROLLING = {m for m, _, rolling in KPIS if rolling}
COUNTS = {"tasks_completed"}


async def ensure_snapshots(conn: AsyncConnection, start: date, end: date) -> None:
    """Snapshot every day of the period that has none yet (idempotent; the daily job normally did)."""
    have = {
        r.day
        for r in await conn.execute(
            text(f"SELECT DISTINCT day FROM {SCHEMA}.metric_snapshots WHERE day BETWEEN :a AND :b"),
            {"a": start, "b": end},
        )
    }
    day = start
    while day <= end:
        if day not in have:
            await snapshot(conn, day)
        day += timedelta(days=1)


def _period(metric: str, rows: list[dict[str, Any]], end: date) -> dict[str, Any]:
    """One (metric, scope id)'s figure over the period from its daily rows."""
    if metric in COUNTS:
        total = sum(r["numerator"] or 0 for r in rows)
        return {"value": total, "num": total, "den": None, "basis": "period"}
    if metric in ROLLING:
        last = max(rows, key=lambda r: r["day"])
        return {
            "value": last["value"],
            "num": last["numerator"],
            "den": last["denominator"],
            "basis": f"latest ({last['day']})" if last["day"] != end else "latest",
        }
    num = sum(r["numerator"] or 0 for r in rows)
    den = sum(r["denominator"] or 0 for r in rows)
    return {"value": num / den if den else None, "num": num, "den": den, "basis": "period"}


async def build(
    conn: AsyncConnection, kind: str, start: date, end: date, targets: list[KpiTarget], now: datetime
) -> dict[str, Any]:
    await ensure_snapshots(conn, start, end)
    rows = await read(conn, start, end, limit=1_000_000)
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        grouped[(r["metric"], r["scope"], r["scope_id"])].append(r)
    tmap = by_metric(targets)

    def scope(name: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = defaultdict(dict)
        for (metric, sc, sid), rs in grouped.items():
            if sc == name and metric in LABELS:
                fig = _period(metric, rs, end)
                t = tmap.get(metric)
                if t is not None and metric not in COUNTS:
                    fig["status"] = t.status(fig["value"])
                out[sid][metric] = fig
        return dict(sorted(out.items()))

    overall = []
    for metric, label, _ in KPIS:
        rs = grouped.get((metric, "overall", "all"))
        fig: dict[str, Any] = (
            _period(metric, rs, end) if rs else {"value": None, "num": None, "den": None, "basis": "—"}
        )
        t = tmap.get(metric)
        overall.append(
            {
                "metric": metric,
                "label": label,
                **fig,
                "target": t.target if t else None,
                "near_at": t.near_at if t else None,
                "status": t.status(fig["value"]) if t else None,
            }
        )
    campaigns = scope("campaign")
    collected: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in await campaign_collected(conn, start, end):  # per currency: minor units are not summed across
        collected[c["campaign_id"]].append(
            {"currency": c["currency"], "collected_minor": c["collected_minor"], "payments": c["payments"]}
        )
    red_flags = [
        f"{k['label']}: {_pct(k['value'])} against a target of {_pct(k['target'])} ({k['status']})"
        for k in overall
        if k["status"] in ("missed", "near")
    ]
    return {
        "kind": kind,
        "title": TITLES[kind],
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
        "generated_at": now.isoformat(),
        "overall": overall,
        "aging_buckets": scope("aging_bucket"),
        "campaigns": campaigns,
        "collected": {cid: collected[cid] for cid in sorted(collected)},
        "collectors": scope("collector"),
        "red_flags": red_flags,
    }


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f}%"


def fmt(metric: str, v: Any) -> str:
    """A figure as shown in the files: a percentage for a rate, a whole number for a count."""
    if v is None:
        return "—"
    if metric in COUNTS:
        return f"{v:,.0f}"
    return _pct(v)
