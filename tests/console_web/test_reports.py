"""/reports: the reports escalation generated (its real API, in-process, same database), listed for a viewer,
each readable and downloadable as XLSX and PDF through the console as the signed-in person; a supervisor
generates a missed period from the page."""

from __future__ import annotations

import io
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from arrears_console.web.upstream import Upstreams
from arrears_escalation.__main__ import definition as escalation_definition
from arrears_escalation.deps import Deps
from arrears_escalation.reports.service import generate
from arrears_escalation.settings import EscalationSettings
from arrears_shared.clock import Clock
from arrears_shared.service import ServiceHost
from auth_support import bearer, issue_key_async
from openpyxl import load_workbook
from sqlalchemy import text

from .support import console_host, settings

WEEK = date(2026, 2, 2)  # a Monday


@pytest.fixture(scope="module")
async def reports(broker: Any, fresh_database_url: Callable[..., str]) -> AsyncIterator[dict[str, Any]]:
    url = fresh_database_url("console_reports")
    deps = Deps(clock=Clock(fixed=datetime(2026, 3, 2, 10, tzinfo=UTC)))
    esc_def = escalation_definition(
        EscalationSettings(**settings(broker, url, escalation_reports_enabled=False)), deps
    )
    esc_def.consumers, esc_def.loops = [], []
    esc = ServiceHost(esc_def)
    esc_app = esc.build_app()
    await esc.start()
    assert esc.ctx is not None
    async with esc.ctx.engine.begin() as conn:
        await conn.execute(
            text(
                """INSERT INTO escalation.metric_snapshots (day, scope, scope_id, metric, value, numerator,
                denominator) VALUES (:d, 'overall', 'all', 'recovery_rate', 0.3, 3, 10),
                (:d, 'collector', 'cora', 'tasks_completed', 5, 5, NULL)"""
            ),
            {"d": WEEK + timedelta(days=6)},
        )
        await generate(
            conn, "weekly_kpi", WEEK, WEEK + timedelta(days=6), targets=deps.targets, recipients=[],
            now=datetime(2026, 2, 9, 9, tzinfo=UTC), by="schedule",
        )  # fmt: skip
        keys = {r: await issue_key_async(conn, r) for r in ("viewer", "collector", "supervisor")}
    try:
        async with console_host(broker, url) as (host, client):
            assert host.ctx is not None
            ups = Upstreams(
                {"escalation": "http://escalation"},
                httpx.AsyncClient(transport=httpx.ASGITransport(app=esc_app)),
            )
            host.ctx.extra["upstreams"] = ups
            yield {"client": client, "keys": keys, "engine": esc.ctx.engine}
            await ups.close()
    finally:
        await esc.stop()


async def test_reports_are_listed_readable_and_downloadable(reports: dict[str, Any]) -> None:
    c: httpx.AsyncClient = reports["client"]
    viewer = bearer(reports["keys"]["viewer"])
    r = await c.get("/reports", headers=viewer)
    assert r.status_code == 200, r.text
    assert '<a href="/reports" aria-current="page">Reports</a>' in r.text  # in the navigation
    assert "Weekly KPI report" in r.text and "2026-02-02 to 2026-02-08" in r.text
    assert "no list configured" in r.text
    assert "Generate a period now" not in r.text  # a viewer may not

    d = await c.get("/reports/weekly_kpi-2026-02-02", headers=viewer)
    assert d.status_code == 200
    row = re.search(r'<th scope="row">Recovery rate</th>(.*?)</tr>', d.text, re.S)
    assert row and "30.0%" in row.group(1) and "40.0%" in row.group(1) and "missed" in row.group(1)
    assert "Recovery rate: 30.0% against a target of 40.0% (missed)" in d.text  # a red flag
    assert (await c.get("/reports/weekly_kpi-2026-01-05", headers=viewer)).status_code == 404

    x = await c.get("/reports/weekly_kpi-2026-02-02/download", params={"format": "xlsx"}, headers=viewer)
    assert x.status_code == 200 and x.headers["content-disposition"].endswith('weekly_kpi-2026-02-02.xlsx"')
    ws = load_workbook(io.BytesIO(x.content))["By collector"]
    assert list(ws.iter_rows(values_only=True))[1][:2] == ("cora", "5")
    p = await c.get("/reports/weekly_kpi-2026-02-02/download", params={"format": "pdf"}, headers=viewer)
    assert (
        p.status_code == 200
        and p.content.startswith(b"%PDF")
        and p.headers["content-type"] == "application/pdf"
    )


async def test_a_supervisor_generates_a_missed_period(reports: dict[str, Any]) -> None:
    c: httpx.AsyncClient = reports["client"]
    sup = bearer(reports["keys"]["supervisor"])
    page = await c.get("/reports", headers=sup)
    assert "Generate a period now" in page.text
    body = {"kind": "monthly_scorecard", "period_start": "2026-01-01"}
    refused = await c.post("/reports/generate", data=body, headers=bearer(reports["keys"]["collector"]))
    assert refused.status_code == 403
    r = await c.post("/reports/generate", data=body, headers=sup, follow_redirects=False)
    assert r.status_code == 303 and "2026-01-01+to+2026-01-31+is+ready" in r.headers["location"]
    bad = await c.post("/reports/generate", data={**body, "period_start": "2026-01-02"}, headers=sup)
    assert bad.status_code == 303 and "1st+of+a+month" in bad.headers["location"]
    listed = await c.get("/reports", headers=sup)
    assert "Monthly scorecard" in listed.text
