"""/kpis: escalation's real collection-metrics API (in-process, same database) read by the console as the
signed-in person; the page shows the figures of the snapshot rows, overall, by bucket, campaign, collector."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from arrears_console.readmodels.views import today_utc
from arrears_console.web.upstream import Upstreams
from arrears_escalation.__main__ import definition as escalation_definition
from arrears_escalation.settings import EscalationSettings
from arrears_shared.service import ServiceHost
from auth_support import bearer, issue_key_async
from sqlalchemy import text

from .support import console_host, settings

D1, D2, D3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)
SNAPSHOTS = [  # (day, scope, scope_id, metric, value, numerator, denominator)
    (D1, "overall", "all", "collection_rate", 0.25, 25, 100),
    (D2, "overall", "all", "collection_rate", 0.5, 100, 200),  # D3: none (a gap)
    (D1, "overall", "all", "recovery_rate", 0.3, 3, 10),
    (D3, "overall", "all", "recovery_rate", 0.42, 42, 100),
    (D3, "overall", "all", "days_in_arrears_coverage", 0.9, 9, 10),
    (D3, "aging_bucket", "31-60", "days_in_arrears_coverage", 1.0, 2, 2),
    (D1, "aging_bucket", "1-30", "collection_rate", 0.2, 20, 100),
    (D2, "aging_bucket", "31-60", "collection_rate", 0.1, 10, 100),
    (D2, "campaign", "spring", "response_rate", 1 / 3, 1, 3),
    (D2, "campaign", "spring", "collection_rate", 0.25, 30, 120),
    (D2, "campaign", "<b>odd</b>", "automated_notification_rate", 1.0, 4, 4),
    (D1, "collector", "cora", "promise_fulfilment", 0.5, 1, 2),
    (D2, "collector", "cora", "promise_fulfilment", 1.0, 2, 2),
    (D1, "collector", "cora", "tasks_completed", 3, 3, None),
    (D2, "collector", "cora", "tasks_completed", 4, 4, None),
]


@pytest.fixture(scope="module")
async def kpis(broker: Any, fresh_database_url: Callable[..., str]) -> AsyncIterator[dict[str, Any]]:
    url = fresh_database_url("console_kpis")
    esc_def = escalation_definition(EscalationSettings(**settings(broker, url)))
    esc_def.consumers, esc_def.loops = [], []  # only the API (no daily snapshot of its own)
    esc = ServiceHost(esc_def)
    esc_app = esc.build_app()
    await esc.start()
    assert esc.ctx is not None
    async with esc.ctx.engine.begin() as conn:
        await conn.execute(
            text(
                """INSERT INTO escalation.metric_snapshots
                   (day, scope, scope_id, metric, value, numerator, denominator)
                   VALUES (:d, :s, :i, :m, :v, :n, :den)"""
            ),
            [dict(zip(("d", "s", "i", "m", "v", "n", "den"), row, strict=True)) for row in SNAPSHOTS],
        )
        viewer = await issue_key_async(conn, "viewer")
    try:
        async with console_host(broker, url) as (host, client):
            assert host.ctx is not None
            ups = Upstreams(
                {"escalation": "http://escalation"},
                httpx.AsyncClient(transport=httpx.ASGITransport(app=esc_app)),
            )
            host.ctx.extra["upstreams"] = ups
            yield {"client": client, "viewer": viewer, "host": host}
            await ups.close()
    finally:
        await esc.stop()


async def test_kpis_show_the_snapshot_figures(kpis: dict[str, Any]) -> None:
    c: httpx.AsyncClient = kpis["client"]
    r = await c.get(
        "/kpis", params={"from": D1.isoformat(), "to": D3.isoformat()}, headers=bearer(kpis["viewer"])
    )
    assert r.status_code == 200, r.text
    html = r.text
    assert '<a href="/kpis" aria-current="page">KPIs</a>' in html  # in the navigation, for a viewer
    assert "2026-03-01 to 2026-03-03 (3 days)" in html

    def row(label: str) -> str:
        m = re.search(rf'<th scope="row">{re.escape(label)}</th>(.*?)</tr>', html, re.S)
        assert m, label
        return m.group(1)

    # overall: latest daily value (and its day), the period's sum(num)/sum(den), the goal
    coll = row("Collection rate")
    assert "50.0%" in coll and "(2026-03-02)" in coll and "41.7%" in coll  # 125 / 300
    rec = row("Recovery rate")
    assert "42.0%" in rec and "(2026-03-03)" in rec and "rolling" in rec and "40.0%" in rec  # goal
    cov = row("Days-in-arrears coverage")
    assert "90.0%" in cov and "100.0%" in cov  # latest, goal
    assert "no figure" in row("Promise fulfilment")  # nothing overall in the period

    # the trend charts: points scale to the data (y axis 0..100%), the missing day is a gap
    chart = re.search(r'<svg[^>]*id="kpi-collection_rate".*?</svg>', html, re.S)
    assert chart
    svg = chart.group(0)
    assert 'cx="64.0" cy="162.0"' in svg  # D1: 25% of a 200-unit-high plot from y=12, first day at x=64
    assert 'cx="346.0" cy="112.0"' in svg  # D2: 50%, middle of 3 days
    assert "Collection rate, 2026-03-01: 25.0%" in svg and svg.count("<circle") == 2
    assert "No figures for this period" in re.search(
        r'id="kpi-promise_punctuality".*?</svg>', html, re.S
    ).group(0)  # type: ignore[union-attr]
    bucket_svg = re.search(r'id="kpi-collection-by-bucket".*?</svg>', html, re.S).group(0)  # type: ignore[union-attr]
    assert "1-30, 2026-03-01: 20.0%" in bucket_svg and "31-60, 2026-03-02: 10.0%" in bucket_svg

    # by bucket, campaign and collector
    assert "10.0%" in row("31-60") and "20.0%" in row("1-30")
    spring = row("spring")
    assert "25.0%" in spring and "33.3%" in spring
    assert "&lt;b&gt;odd&lt;/b&gt;" in html and "<b>odd</b>" not in html  # escaped
    cora = row("cora")
    assert "75.0%" in cora and ">7<" in cora.replace(" ", "")  # 3 of 4 promises kept; 3 + 4 tasks
    # every KPI is measured by campaign and by collector; by bucket, only collection rate and coverage
    sections = {
        h: re.search(rf'<section aria-labelledby="h-{h}">.*?</section>', html, re.S).group(0)  # type: ignore[union-attr]
        for h in ("buckets", "campaigns", "collectors", "missing")
    }
    assert "Not measured yet for this view: Automated notification rate, Recovery rate" in sections["buckets"]
    assert "Not measured yet for this view" not in sections["campaigns"] + sections["collectors"]
    assert "Promise punctuality" in sections["campaigns"] and "Response rate" in sections["collectors"]
    missing = re.findall(r"<li><b>(.*?)</b>", sections["missing"])
    assert missing == ["Collection efficiency"]  # named in seed 004, never defined
    assert '<th scope="col">Campaign</th>' in html and "<caption" in html


async def test_default_period_access_and_escalation_down(kpis: dict[str, Any]) -> None:
    c: httpx.AsyncClient = kpis["client"]
    r = await c.get("/kpis", headers=bearer(kpis["viewer"]))
    end = today_utc()
    assert r.status_code == 200 and f"{end - timedelta(days=29)} to {end} (30 days)" in r.text
    swapped = await c.get(
        "/kpis", params={"from": D3.isoformat(), "to": D1.isoformat()}, headers=bearer(kpis["viewer"])
    )
    assert "2026-03-01 to 2026-03-03" in swapped.text and "swapped" in swapped.text
    assert (await c.get("/kpis")).status_code in (401, 303)  # no credential

    host = kpis["host"]
    working = host.ctx.extra["upstreams"]
    down = Upstreams({"escalation": "http://127.0.0.1:9"}, httpx.AsyncClient(timeout=2))
    host.ctx.extra["upstreams"] = down
    try:
        r = await c.get("/kpis", headers=bearer(kpis["viewer"]))
    finally:
        host.ctx.extra["upstreams"] = working
        await down.close()
    assert r.status_code == 502 and "Collection metrics are unavailable" in r.text
