"""Manual mode's console pages with escalation's real API (in-process, same database): the account page's
"Record a contact" form and the /manual page's import of the filled-in manual contacts sheet, each a call to
escalation as the signed-in person; the page shows the good rows and the bad rows with their numbers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from arrears_console.web.upstream import Upstreams
from arrears_escalation.__main__ import definition as escalation_definition
from arrears_escalation.deps import Deps
from arrears_escalation.settings import EscalationSettings
from arrears_shared.events import AccountChanged
from arrears_shared.service import ServiceHost
from arrears_shared.stream.transaction import transaction
from auth_support import bearer, issue_key_async
from escalation.test_escalation import env
from sqlalchemy import text

from .support import console_host, settings

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
async def pages(broker: Any, fresh_database_url: Callable[..., str]) -> AsyncIterator[dict[str, Any]]:
    url = fresh_database_url("console_manual")
    esc_settings = EscalationSettings(**settings(broker, url))
    esc_def = escalation_definition(esc_settings, Deps.from_settings(esc_settings))
    handler = esc_def.consumers[0].handler
    esc_def.consumers, esc_def.loops = [], []
    esc = ServiceHost(esc_def)
    esc_app = esc.build_app()
    await esc.start()
    assert esc.ctx is not None
    async with transaction(esc.ctx.engine, "escalation", "escalation") as tx:  # the account, as consumed
        await handler([env(AccountChanged(
            account_id="MM-1", change="created", source="sheet", customer_name="Ada Debtor", phone="+14155550100",
            email="ada@example.com", balance_minor=50_000, currency="USD", due_date=date(2026, 1, 1),
            sms_consent=True, email_consent=True, content_hash="h", as_of=NOW - timedelta(days=30),
        ))], tx)  # fmt: skip
    async with esc.ctx.engine.begin() as conn:
        keys = {r: await issue_key_async(conn, r, name=f"{r}-m") for r in ("viewer", "collector")}
    try:
        async with console_host(broker, url) as (host, client):
            assert host.ctx is not None
            ups = Upstreams(
                {"escalation": "http://escalation"},
                httpx.AsyncClient(transport=httpx.ASGITransport(app=esc_app)),
            )
            host.ctx.extra["upstreams"] = ups
            yield {"client": client, "keys": keys, "esc": esc}
            await ups.close()
    finally:
        await esc.stop()


async def test_record_a_contact_from_the_account_form(pages: dict[str, Any]) -> None:
    c, keys = pages["client"], pages["keys"]
    when = (NOW - timedelta(hours=3)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
    form = {"channel": "visit", "direction": "outbound", "outcome": "left_message", "contacted_at": when,
            "tz": "UTC", "note": "left a card"}  # fmt: skip
    assert (
        await c.post("/accounts/MM-1/contact", data=form, headers=bearer(keys["viewer"]))
    ).status_code == 403
    r = await c.post("/accounts/MM-1/contact", data=form, headers=bearer(keys["collector"]))
    assert r.status_code == 303 and "visit+contact+recorded" in r.headers["location"]
    again = await c.post("/accounts/MM-1/contact", data=form, headers=bearer(keys["collector"]))
    assert "already+recorded" in again.headers["location"]
    future = form | {"contacted_at": (NOW + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")}
    r = await c.post("/accounts/MM-1/contact", data=future, headers=bearer(keys["collector"]))
    assert "error=" in r.headers["location"] and "future" in r.headers["location"]
    async with pages["esc"].ctx.engine.connect() as conn:
        rows = (
            await conn.execute(text("SELECT summary FROM escalation.activity WHERE kind = 'contact.manual'"))
        ).all()
    assert [r.summary for r in rows] == [
        "visit (outbound): left message — recorded by collector-m (collector)"
    ]


async def test_manual_page_imports_the_sheet_and_lists_each_row(pages: dict[str, Any]) -> None:
    c, keys = pages["client"], pages["keys"]
    collector = bearer(keys["collector"])
    page = await c.get("/manual", headers=collector)
    assert page.status_code == 200 and 'enctype="multipart/form-data"' in page.text
    assert "Download the working set" not in page.text  # the export is for supervisors and admins
    day = (NOW - timedelta(days=1)).date().isoformat()
    sheet = (
        "account_id,when,channel,direction,outcome,note,promise_amount,promise_date\n"
        f"MM-1,{day} 10:00,call,outbound,reached,=1+1,,\n"
        f"MM-1,{day} 11:00,fax,outbound,reached,,,\n"
    ).encode()
    files = {"file": ("manual.csv", sheet, "text/csv")}
    r = await c.post("/manual/import", files=files, data={"tz": "UTC"}, headers=collector)
    assert r.status_code == 200, r.text
    assert "2 rows — 1 recorded, 0 already recorded, 1 rejected" in r.text
    bad = re.search(r"<tbody><tr><td>(\d+)</td><td>(\w+)</td><td>(.*?)</td>", r.text)
    assert bad and bad.group(1, 2) == ("3", "channel") and "fax" in bad.group(3)
    r = await c.post("/manual/import", files=files, data={"tz": "UTC"}, headers=collector)
    assert "2 rows — 0 recorded, 1 already recorded, 1 rejected" in r.text
    r = await c.post(
        "/manual/import", files={"file": ("x.csv", b"nothing,here\n", "text/csv")}, headers=collector
    )
    assert r.status_code == 400 and "import refused" in r.text
