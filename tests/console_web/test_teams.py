"""/teams and /notifications: escalation's real API (in-process, same database) called by the console as the
signed-in person. A supervisor sets a team's hours on the page (audited in escalation), a collector sees them
but cannot change them; after a breach only the assignee and the team lead see the notification, with the
unread count for the header badge, and mark it read."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from arrears_console.web.upstream import Upstreams
from arrears_escalation.__main__ import definition as escalation_definition
from arrears_escalation.deps import Deps
from arrears_escalation.settings import EscalationSettings
from arrears_escalation.tasks.assignment import Agent
from arrears_escalation.tasks.service import check_sla, create_task
from arrears_shared.service import ServiceHost
from auth_support import bearer, issue_key_async
from sqlalchemy import text

from .support import console_host, settings

NY = ZoneInfo("America/New_York")
PEOPLE = (("cw-lead", "supervisor"), ("cw-ana", "collector"), ("cw-otto", "collector"), ("cw-vic", "viewer"))


@pytest.fixture(scope="module")
async def site(broker: Any, fresh_database_url: Callable[..., str]) -> AsyncIterator[dict[str, Any]]:
    url = fresh_database_url("console_teams")
    esc_def = escalation_definition(EscalationSettings(**settings(broker, url)))
    esc_def.consumers, esc_def.loops = [], []
    esc = ServiceHost(esc_def)
    esc_app = esc.build_app()
    await esc.start()
    assert esc.ctx is not None
    async with esc.ctx.engine.begin() as conn:
        keys = {name: await issue_key_async(conn, role, name=name) for name, role in PEOPLE}
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


FORM = {
    "team": "cw-collectors",
    "timezone": "America/New_York",
    **{f"hours_{d}": "09:00-12:00, 13:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")},
    "hours_sat": "",
    "hours_sun": "",
    "holidays": "2026-12-25 Christmas Day\n2027-01-01 New Year's Day",
    "lead": "cw-lead",
    "emails": "cw-ana ana@team.test\ncw-lead lead@team.test",
}


async def test_a_supervisor_sets_the_hours_a_collector_reads_them(site: dict[str, Any]) -> None:
    c, keys = site["client"], site["keys"]
    r = await c.post("/teams", data=FORM, headers=bearer(keys["cw-ana"]))
    assert r.status_code == 403
    r = await c.post("/teams", data={**FORM, "hours_mon": "9 to 5"}, headers=bearer(keys["cw-lead"]))
    assert r.status_code == 303 and "not+like+09%3A00-17%3A00" in r.headers["location"]
    r = await c.post("/teams", data={**FORM, "timezone": "Moon/Base"}, headers=bearer(keys["cw-lead"]))
    assert r.status_code == 303 and "error=" in r.headers["location"] and "saving" in r.headers["location"]
    r = await c.post("/teams", data=FORM, headers=bearer(keys["cw-lead"]))
    assert r.status_code == 303 and "flash=" in r.headers["location"], r.headers["location"]

    page = (await c.get("/teams", headers=bearer(keys["cw-ana"]))).text
    assert '<a href="/teams" aria-current="page">Teams</a>' in page
    assert "cw-collectors" in page and "America/New_York" in page
    assert page.count("09:00-12:00, 13:00-17:00") == 5 and "Christmas Day" in page
    assert "Lead: cw-lead" in page
    assert "Edit cw-collectors" not in page  # a collector cannot change it
    sup = (await c.get("/teams", headers=bearer(keys["cw-lead"]))).text
    assert "Edit cw-collectors" in sup and "ana@team.test" in sup
    assert (await c.get("/teams", headers=bearer(keys["cw-vic"]))).status_code == 403
    async with site["engine"].connect() as conn:
        audit = (
            await conn.execute(
                text("SELECT actor, action FROM escalation.audit_log WHERE entity = 'team' ORDER BY seq")
            )
        ).all()
    assert [tuple(a) for a in audit] == [("cw-lead", "team.create")]


async def test_a_breach_shows_to_the_assignee_and_the_lead_only(site: dict[str, Any]) -> None:
    c, keys, engine = site["client"], site["keys"], site["engine"]
    r = await c.post("/teams", data=FORM, headers=bearer(keys["cw-lead"]))
    assert r.status_code == 303
    deps = Deps(agents=[Agent(id="cw-ana", team="cw-collectors")])
    friday_five = datetime(2026, 12, 4, 17, tzinfo=NY)
    async with engine.begin() as conn:
        tid = await create_task(
            conn,
            deps,
            account_id="ACC-CW-1",
            case_id=None,
            kind="call_back",
            team="cw-collectors",
            priority="high",
            due_in=timedelta(hours=8),
            sla=timedelta(hours=4),
            rule_id=None,
            trigger_id="cw",
            detail="",
            now=friday_five,
        )
        assert tid is not None
        await check_sla(conn, deps, datetime(2026, 12, 7, 13, 59, tzinfo=NY))  # 4 working hours: 14:00
    assert (await c.get("/notifications/unread", headers=bearer(keys["cw-ana"]))).json() == {"unread": 0}
    async with engine.begin() as conn:
        await check_sla(conn, deps, datetime(2026, 12, 7, 14, tzinfo=NY))

    def titles(html: str) -> list[str]:
        return re.findall(r"SLA breached: call_back \(high\) for account ACC-CW-1", html)

    seen = {}
    for name in ("cw-ana", "cw-lead", "cw-otto", "cw-vic"):
        r = await c.get("/notifications", headers=bearer(keys[name]))
        assert r.status_code == 200, (name, r.text)
        seen[name] = len(titles(r.text))
        assert 'id="notif-unread"' in r.text  # the header badge, filled by app.js
    assert seen == {"cw-ana": 1, "cw-lead": 1, "cw-otto": 0, "cw-vic": 0}
    assert (await c.get("/notifications/unread", headers=bearer(keys["cw-ana"]))).json() == {"unread": 1}
    ana = (await c.get("/notifications", headers=bearer(keys["cw-ana"]))).text
    assert "the assignee" in ana and "1 unread" in ana
    lead = (await c.get("/notifications", headers=bearer(keys["cw-lead"]))).text
    assert "the team lead" in lead
    nid = re.search(r'name="notification_id" value="(\d+)"', ana)
    assert nid
    r = await c.post(
        "/notifications/read", data={"notification_id": nid.group(1)}, headers=bearer(keys["cw-ana"])
    )
    assert r.status_code == 303 and "1+marked+read" in r.headers["location"]
    assert (await c.get("/notifications/unread", headers=bearer(keys["cw-ana"]))).json() == {"unread": 0}
    assert (await c.get("/notifications/unread", headers=bearer(keys["cw-lead"]))).json() == {"unread": 1}
