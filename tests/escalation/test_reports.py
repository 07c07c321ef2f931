"""Scheduled reports: the weekly KPI report and the monthly scorecard are generated once per period (two
replicas at once and a restart make no second one), stored, downloadable as XLSX and PDF with the figures, and
e-mailed once to the distribution list through the real Gmail client (counted at the Gmail emulator), a send
left in doubt reconciled with the mailbox instead of sent again."""

from __future__ import annotations

import asyncio
import base64
import io
import re
import zlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from arrears_emulators.common import EmulatorServer
from arrears_emulators.gmail.app import GmailConfig
from arrears_emulators.gmail.app import create_app as create_gmail
from arrears_escalation.__main__ import definition
from arrears_escalation.deps import Deps
from arrears_escalation.reports.models import ReportsConfig, last_period
from arrears_escalation.reports.service import deliver, generate_due
from arrears_escalation.settings import EscalationSettings
from arrears_shared.clock import Clock
from arrears_shared.db.engine import make_engine
from arrears_shared.service import ServiceHost
from auth_support import bearer, issue_key_async
from openpyxl import load_workbook
from sqlalchemy import text

SENDER = "reports@arrears.test"
LIST = ["head.of.collections@example.com", "finance@example.com"]
NOW = datetime(2026, 6, 1, 10, tzinfo=UTC)  # a Monday and the 1st: both reports are due
WEEK = (date(2026, 5, 25), date(2026, 5, 31))


@pytest.fixture(scope="module")
def gmail() -> Iterator[Any]:
    with EmulatorServer(create_gmail(GmailConfig(user_email=SENDER))) as srv:
        yield srv


def cfg(gmail: Any, **kw: Any) -> ReportsConfig:
    return ReportsConfig(
        recipients=LIST, sender=SENDER, gmail_api_endpoint=gmail.url, gmail_token="emulator-token", **kw
    )


def sent_reports(gmail: Any) -> list[dict[str, Any]]:
    r = httpx.get(f"{gmail.url}/_emulator/ledger", timeout=10)
    r.raise_for_status()
    return [e for e in r.json()["entries"] if (e.get("content") or "").startswith(("Weekly", "Monthly"))]


async def seed(engine: Any) -> None:
    """The week's snapshots: automated notifications 8 of 10 a day (80 %: near 85 %), coverage 95 % at the
    end (near 100 %), recovery 45 % at the end (met 40 %); campaign `spring` collects 30 of 100 a day;
    collector `cora` completes 2 tasks a day and keeps 1 of 2 promises."""
    rows = []
    for i in range(7):
        d = WEEK[0] + timedelta(days=i)
        rows += [
            (d, "overall", "all", "automated_notification_rate", 0.8, 8, 10),
            (
                d,
                "overall",
                "all",
                "days_in_arrears_coverage",
                0.95 if i == 6 else 0.5,
                95 if i == 6 else 50,
                100,
            ),
            (d, "overall", "all", "recovery_rate", 0.45 if i == 6 else 0.1, 45 if i == 6 else 10, 100),
            (d, "campaign", "spring", "collection_rate", 0.3, 30, 100),
            (d, "collector", "cora", "tasks_completed", 2, 2, None),
            (d, "collector", "cora", "promise_fulfilment", 0.5, 1, 2),
            (d, "collector", "=HYPERLINK(1)", "tasks_completed", 1, 1, None),  # formula-looking name
        ]
    async with engine.begin() as c:
        await c.execute(
            text(
                """INSERT INTO escalation.metric_snapshots
                   (day, scope, scope_id, metric, value, numerator, denominator)
                   VALUES (:d, :s, :i, :m, :v, :n, :den)"""
            ),
            [dict(zip(("d", "s", "i", "m", "v", "n", "den"), r, strict=True)) for r in rows],
        )


def pdf_text(body: bytes) -> str:
    """The text the PDF's content streams draw (reportlab writes them ASCII85 + Flate encoded)."""
    out = []
    for m in re.finditer(
        rb"/Filter \[ /ASCII85Decode /FlateDecode \][^>]*>>\s*stream\r?\n(.*?)endstream", body, re.S
    ):
        data = m.group(1).strip()
        data = data[2:] if data.startswith(b"<~") else data
        out.append(zlib.decompress(base64.a85decode(data.removesuffix(b"~>"))).decode("latin-1"))
    return "".join(re.findall(r"\((.*?)(?<!\\)\)\s*Tj", "".join(out)))


def test_periods() -> None:
    assert last_period("weekly_kpi", date(2026, 6, 1)) == WEEK
    assert last_period("weekly_kpi", date(2026, 6, 3)) == WEEK
    assert last_period("monthly_scorecard", date(2026, 6, 1)) == (date(2026, 5, 1), date(2026, 5, 31))
    assert last_period("monthly_scorecard", date(2026, 3, 15)) == (date(2026, 2, 1), date(2026, 2, 28))
    c = ReportsConfig(hour_utc=9, weekday=0)
    assert not c.due("weekly_kpi", NOW.replace(hour=8)) and c.due("weekly_kpi", NOW)
    assert c.due("weekly_kpi", NOW + timedelta(days=2))  # a missed Monday catches up later in the week
    assert not c.due("monthly_scorecard", NOW.replace(hour=8)) and c.due("monthly_scorecard", NOW)


async def test_generated_once_per_period_across_replicas_and_emailed_once(
    engine, escalation_url, gmail
) -> None:
    await seed(engine)
    targets = Deps().targets
    other = make_engine(escalation_url)  # a second replica: its own connection pool
    try:
        made = await asyncio.gather(
            generate_due(engine, cfg(gmail), targets, NOW), generate_due(other, cfg(gmail), targets, NOW)
        )
        assert sorted(r.report_id for rs in made for r in rs) == [
            "monthly_scorecard-2026-05-01",
            "weekly_kpi-2026-05-25",
        ]
        assert await generate_due(engine, cfg(gmail), targets, NOW + timedelta(hours=5)) == []  # a restart
        async with engine.connect() as c:
            n = (await c.execute(text("SELECT kind, count(*) FROM escalation.reports GROUP BY kind"))).all()
        assert sorted(tuple(r) for r in n) == [("monthly_scorecard", 1), ("weekly_kpi", 1)]

        sent = await asyncio.gather(deliver(engine, cfg(gmail), NOW), deliver(other, cfg(gmail), NOW))
        assert sum(sent) == 2
        assert await deliver(engine, cfg(gmail), NOW + timedelta(hours=1)) == 0
    finally:
        await other.dispose()
    mails = sent_reports(gmail)
    assert len(mails) == 2, mails
    for m in mails:
        assert sorted(m["recipients"]) == sorted(LIST) and m["sender"] == SENDER
    async with engine.connect() as c:
        states = dict((await c.execute(text("SELECT report_id, email_state FROM escalation.reports"))).all())
    assert set(states.values()) == {"sent"}


@pytest.fixture
async def api(
    broker: Any, escalation_url: str, gmail: Any
) -> AsyncIterator[tuple[ServiceHost, httpx.AsyncClient]]:
    settings = EscalationSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=escalation_url,
        escalation_reports_recipients=",".join(LIST),
        escalation_notify_sender=SENDER,
        escalation_notify_gmail_api_endpoint=gmail.url,
        escalation_notify_gmail_token="emulator-token",
    )
    deps = Deps.from_settings(settings)
    deps.clock = Clock(fixed=NOW)
    d = definition(settings, deps)
    d.consumers, d.loops = [], []
    host = ServiceHost(d)
    app = host.build_app()
    await host.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://esc") as client:
        yield host, client
    await host.stop()


async def test_download_xlsx_and_pdf_with_the_figures_and_generate_a_missed_period(
    api, engine, gmail
) -> None:
    host, client = api
    assert host.ctx is not None
    async with host.ctx.engine.begin() as conn:
        viewer = await issue_key_async(conn, "viewer")
        collector = await issue_key_async(conn, "collector")
        sup = await issue_key_async(conn, "supervisor", name="rep-sup")
    listed = await client.get("/reports", headers=bearer(viewer))
    assert listed.status_code == 200
    assert [r["report_id"] for r in listed.json()] == [
        "weekly_kpi-2026-05-25",
        "monthly_scorecard-2026-05-01",
    ]

    x = await client.get(
        "/reports/weekly_kpi-2026-05-25/file", params={"format": "xlsx"}, headers=bearer(viewer)
    )
    assert x.status_code == 200 and "spreadsheetml" in x.headers["content-type"]
    wb = load_workbook(io.BytesIO(x.content))
    kpis = {r[0]: r for r in wb["KPIs against targets"].iter_rows(values_only=True)}
    assert kpis["Automated notification rate"][1:] == ("80.0%", "period", "85.0%", "near")
    assert kpis["Days-in-arrears coverage"][1:] == ("95.0%", "latest", "100.0%", "near")
    assert kpis["Recovery rate"][1:] == ("45.0%", "latest", "40.0%", "met")
    collectors = {r[0]: r for r in wb["By collector"].iter_rows(values_only=True)}
    assert collectors["cora"][collectors["Collector"].index("Tasks completed")] == "14"
    assert "'=HYPERLINK(1)" in collectors  # written as text, never a formula
    summary = [r[0] for r in wb["Summary"].iter_rows(values_only=True)]
    assert "Weekly KPI report" in summary and any(
        "Automated notification rate: 80.0%" in (s or "") for s in summary
    )

    p = await client.get(
        "/reports/monthly_scorecard-2026-05-01/file", params={"format": "pdf"}, headers=bearer(viewer)
    )
    assert p.status_code == 200 and p.content.startswith(b"%PDF")
    drawn = pdf_text(p.content)
    assert "Monthly scorecard" in drawn and "Scorecard by collector" in drawn
    assert "Automated notification rate" in drawn and "80.0%" in drawn and "cora" in drawn
    assert (await client.get("/reports/nope/file", headers=bearer(viewer))).status_code == 404

    # a period the schedule missed: a supervisor generates it (audited; a collector may not), once
    body = {"kind": "weekly_kpi", "period_start": "2026-05-18"}
    assert (await client.post("/reports/generate", json=body, headers=bearer(collector))).status_code == 403
    bad = await client.post(
        "/reports/generate", json={**body, "period_start": "2026-05-19"}, headers=bearer(sup)
    )
    assert bad.status_code == 422  # not a Monday
    first = await client.post("/reports/generate", json=body, headers=bearer(sup))
    again = await client.post("/reports/generate", json=body, headers=bearer(sup))
    assert first.status_code == again.status_code == 200, first.text
    assert first.json()["generated_by"] == again.json()["generated_by"] == "rep-sup"
    assert first.json()["email_state"] == "pending"
    async with engine.connect() as c:
        audit = (
            await c.execute(
                text(
                    "SELECT actor FROM escalation.audit_log WHERE action = 'report.generate' AND entity_id = :r"
                ),
                {"r": "weekly_kpi-2026-05-18"},
            )
        ).all()
    assert [a.actor for a in audit] == ["rep-sup"]

    # its e-mail is accepted but the answer is lost: in doubt; later reconciled with the mailbox, not resent
    before = len(sent_reports(gmail))
    async with httpx.AsyncClient(timeout=10) as h:
        fault = {"accept_then_drop": {"next": 1, "operations": ["users.messages.send"]}}
        (await h.post(f"{gmail.url}/_emulator/faults", json=fault)).raise_for_status()
    c1 = cfg(gmail)
    assert await deliver(engine, c1, NOW) == 0
    async with engine.connect() as c:
        state = (
            await c.execute(
                text("SELECT email_state FROM escalation.reports WHERE report_id = 'weekly_kpi-2026-05-18'")
            )
        ).scalar_one()
    assert state == "sending"
    await deliver(engine, c1, NOW + timedelta(minutes=10))
    async with engine.connect() as c:
        state = (
            await c.execute(
                text("SELECT email_state FROM escalation.reports WHERE report_id = 'weekly_kpi-2026-05-18'")
            )
        ).scalar_one()
    assert state == "sent"
    mails = sent_reports(gmail)
    assert len(mails) == before + 1  # the one accepted send, never a second
    raw = mails[-1]
    assert raw["content"].startswith("Weekly KPI report, 2026-05-18 to 2026-05-24")


def test_a_distribution_list_without_a_mailbox_refuses_to_start() -> None:
    with pytest.raises(ValueError, match="ARREARS_ESCALATION_NOTIFY_SENDER"):
        definition(
            EscalationSettings(database_url="postgresql://x/y", escalation_reports_recipients="a@example.com")
        )
