"""Collection KPIs (seeds 001 and 004): overall, by aging bucket, by campaign and by collector, with trend
charts over a chosen period, read from escalation's daily collection-metrics snapshots
(`GET /collection-metrics`, called as the signed-in person). Nothing is computed here but sums over the
period: each figure is escalation's numerator / denominator, so a period figure weighs every day by its size.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import partial
from typing import Any

from arrears_shared.auth import Principal, requires
from arrears_shared.isodate import IsoDate
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from ...readmodels.service import BUCKETS
from ...readmodels.views import today_utc
from ..charts import Series, line_chart, percent
from ..templating import page
from ..upstream import UpstreamError
from .common import ContextGetter, upstreams

DEFAULT_DAYS = 30
MAX_DAYS = 366
SCOPES = ("overall", "aging_bucket", "campaign", "collector")
ROW_LIMIT = 10_000  # escalation's cap per call; one call per scope


@dataclass(frozen=True)
class Kpi:
    metric: str  # escalation's metric name
    label: str
    definition: str
    scopes: tuple[str, ...]  # the scopes escalation computes it for (the one list: the page derives the rest)
    additive: bool = True  # a daily figure: the period's is sum(numerators) / sum(denominators)
    rate: bool = True  # a ratio (else a count, e.g. tasks completed)


KPIS = (
    Kpi("days_in_arrears_coverage", "Days-in-arrears coverage",
        "Accounts in arrears (balance left, due date passed) contacted automatically or by a person in the "
        "last 30 days, out of all accounts in arrears", SCOPES, additive=False),
    Kpi("automated_notification_rate", "Automated notification rate",
        "Automatic messages sent, out of those plus the calls people made (completed call tasks)",
        ("overall", "campaign", "collector")),
    Kpi("recovery_rate", "Recovery rate",
        "Paid in the last 7 days, out of that plus the balance those accounts still owe",
        ("overall", "campaign", "collector"), additive=False),
    Kpi("collection_rate", "Collection rate",
        "Paid that day, out of that plus the balance left on the paying accounts; bucket = days past due at "
        "the payment", SCOPES),
    Kpi("promise_fulfilment", "Promise fulfilment",
        "Promises kept, out of the promises kept or broken that day", ("overall", "campaign", "collector")),
    Kpi("promise_punctuality", "Promise punctuality",
        "Promises kept on or before the promised date, out of the promises kept",
        ("overall", "campaign", "collector")),
    Kpi("response_rate", "Response rate",
        "Accounts messaged in the last 7 days that replied, out of the accounts messaged",
        ("overall", "campaign", "collector"), additive=False),
    Kpi("tasks_completed", "Tasks completed", "Tasks a collector completed", ("campaign", "collector"),
        rate=False),
    # Seed 004 names collection efficiency but never defines it (nor do the other seeds): nothing to compute
    # until the source documents say what it is, so it stays declared here with no scope ("not measured yet").
    Kpi("collection_efficiency", "Collection efficiency", "named in seed 004 without a definition", ()),
)  # fmt: skip
BY_METRIC = {k.metric: k for k in KPIS}
NOT_MEASURED = [k for k in KPIS if not k.scopes]  # in no scope at all; a scope's gaps are in its table


@dataclass
class Figure:
    """One KPI for one scope over the period: the daily values (for the chart) and the period figure."""

    daily: dict[date, float | None] = field(default_factory=dict)
    num: float = 0.0
    den: float = 0.0
    latest_day: date | None = None
    latest: float | None = None

    def add(self, day: date, value: float | None, num: float | None, den: float | None) -> None:
        self.daily[day] = value
        self.num += num or 0.0
        self.den += den or 0.0
        if value is not None and (self.latest_day is None or day >= self.latest_day):
            self.latest_day, self.latest = day, value

    def period(self, kpi: Kpi) -> float | None:
        """Sum of numerators / sum of denominators for a daily rate; the sum for a count; None for a
        rolling-window figure (days overlap: its trend and latest value say it)."""
        if not kpi.rate:
            return self.num
        if not kpi.additive:
            return None
        return self.num / self.den if self.den else None

    def values(self, days: list[date]) -> list[float | None]:
        return [self.daily.get(d) for d in days]


def collate(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], Figure]:
    """(metric, scope, scope_id) -> Figure, from escalation's snapshot rows."""
    out: dict[tuple[str, str, str], Figure] = defaultdict(Figure)
    for r in rows:
        day = date.fromisoformat(r["day"]) if isinstance(r["day"], str) else r["day"]
        out[(r["metric"], r["scope"], r["scope_id"])].add(day, r["value"], r["numerator"], r["denominator"])
    return dict(out)


STATUS_TEXT = {"met": "met", "near": "near", "missed": "missed", "no_data": "no figure"}


def status(target: dict[str, Any] | None, value: float | None) -> str | None:
    """A figure against its target (escalation's `GET /collection-metrics/targets`): `met` at or above the
    target, `near` at or above `near_at`, else `missed`; None without a target."""
    if target is None:
        return None
    if value is None:
        return "no_data"
    if value >= target["target"] - 1e-12:
        return "met"
    return "near" if value >= target["near_at"] - 1e-12 else "missed"


def judged(kpi: Kpi, f: Figure | None) -> float | None:
    """The figure a KPI is judged by: the period's for a daily rate, the latest for a rolling one."""
    if f is None:
        return None
    return f.latest if not kpi.additive else f.period(kpi)


def fmt(kpi: Kpi, v: float | None) -> str:
    if v is None:
        return "—"
    return percent(v) if kpi.rate else f"{v:,.0f}"


def period_of(start: date | None, end: date | None) -> tuple[date, date, str]:
    """The period asked for, defaulting to the last 30 days up to today, capped at 366 days."""
    note = ""
    end = end or today_utc()
    start = start or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        start, end, note = end, start, "The start was after the end: swapped."
    if (end - start).days + 1 > MAX_DAYS:
        start, note = end - timedelta(days=MAX_DAYS - 1), f"At most {MAX_DAYS} days: the period starts later."
    return start, end, note


def scope_table(
    figures: dict[tuple[str, str, str], Figure], scope: str
) -> tuple[list[Kpi], list[Kpi], list[tuple[str, dict[str, Figure]]]]:
    """For one scope: the KPIs measured for it, those measured elsewhere but not for it yet (both from
    `KPIS`), and one row per scope id."""
    measured = [k for k in KPIS if scope in k.scopes]
    rows: dict[str, dict[str, Figure]] = defaultdict(dict)
    for (metric, sc, sid), fig in figures.items():
        if sc == scope and metric in BY_METRIC:
            rows[sid][metric] = fig
    order = BUCKETS if scope == "aging_bucket" else sorted(rows)
    missing = [k for k in KPIS if k.scopes and scope not in k.scopes]
    return measured, missing, [(s, rows[s]) for s in order if s in rows]


def router(get_context: ContextGetter) -> APIRouter:
    r = APIRouter(tags=["web"], include_in_schema=False)
    reader = Depends(requires("reports.read"))

    @r.get("/kpis", response_class=HTMLResponse)
    async def kpis(
        request: Request,
        who: Principal = reader,
        start: IsoDate | None = Query(
            None, alias="from", description="First day (default: 29 days before `to`)"
        ),
        end: IsoDate | None = Query(None, alias="to", description="Last day (default: today, UTC)"),
    ) -> HTMLResponse:
        start, end, note = period_of(start, end)
        days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        ups = upstreams(get_context())
        params = {"from": start.isoformat(), "to": end.isoformat(), "limit": ROW_LIMIT}
        unavailable, truncated = "", False
        rows: list[dict[str, Any]] = []
        targets: dict[str, dict[str, Any]] = {}
        try:
            *got, found_targets = await asyncio.gather(
                *(
                    ups.call(
                        request,
                        who,
                        "escalation",
                        "GET",
                        "/collection-metrics",
                        params={**params, "scope": s},
                    )
                    for s in SCOPES
                ),
                ups.call(request, who, "escalation", "GET", "/collection-metrics/targets"),
            )
            for part in got:
                rows.extend(part or [])
                truncated = truncated or len(part or []) >= ROW_LIMIT
            targets = {t["metric"]: t for t in (found_targets or {}).get("targets", [])}
        except UpstreamError as e:
            unavailable = e.detail
        figures = collate(rows)
        overall = [(k, figures.get((k.metric, "overall", "all"))) for k in KPIS if "overall" in k.scopes]
        judged_overall = {
            k.metric: (targets.get(k.metric), status(targets.get(k.metric), judged(k, f))) for k, f in overall
        }
        charts = [
            (k, line_chart(f"kpi-{k.metric}", f"{k.label}, daily, {start} to {end}", days,
                           [Series(k.label, f.values(days) if f else [None] * len(days))], partial(fmt, k),
                           y_max=1.0 if k.rate else None))
            for k, f in overall
        ]  # fmt: skip
        bucket_figs = {b: figures.get(("collection_rate", "aging_bucket", b)) for b in BUCKETS}
        bucket_chart = line_chart(
            "kpi-collection-by-bucket",
            f"Collection rate by aging bucket, daily, {start} to {end}",
            days,
            [Series(b, f.values(days)) for b, f in bucket_figs.items() if f],
            percent,
            y_max=1.0,
        )
        return page(
            request,
            who,
            "kpis.html",
            status=502 if unavailable else 200,
            start=start,
            end=end,
            days=len(days),
            note=note,
            unavailable=unavailable,
            truncated=truncated,
            overall=overall,
            charts=charts,
            bucket_chart=bucket_chart,
            tables={s: scope_table(figures, s) for s in ("aging_bucket", "campaign", "collector")},
            not_measured=NOT_MEASURED,
            fmt=fmt,
            targets=targets,
            judged=judged_overall,
            status_of=lambda k, f: status(targets.get(k.metric), judged(k, f)),
            status_text=STATUS_TEXT,
            quick=[(n, (end - timedelta(days=n - 1)).isoformat()) for n in (7, 30, 90, 365)],
        )

    return r
