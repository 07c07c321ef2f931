"""Manual mode's working-set export (`GET /exports/working-set`) through the console's real app: its read
models in PostgreSQL, and the segmenter's real API (in-process, same database) for next steps. XLSX (three
sheets, drop-downs on the manual contacts sheet), CSV per sheet, formula-safe cells, supervisors and admins
only, audited with its row count; personal data masked for a principal who may not see it; and the file
still comes when the segmenter cannot be reached, saying so in every row."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from arrears_console.exports import rows as export_rows
from arrears_console.readmodels import handlers
from arrears_console.readmodels.views import today_utc
from arrears_console.web.upstream import Upstreams
from arrears_shared.auth import Principal
from arrears_shared.cloudevents import Envelope
from arrears_shared.db.migrate import upgrade
from arrears_shared.events import AccountChanged, Event, MessageSent, OverrideRequested
from arrears_shared.stream.transaction import Transaction
from auth_support import bearer, issue_key_async
from openpyxl import load_workbook
from segmenter.support import account as seg_account
from segmenter.support import deps as seg_deps
from segmenter.support import handle as seg_handle
from segmenter.support import segmenter_api
from sqlalchemy import text

from .support import console_host

NOW = datetime.now(UTC)
TODAY = today_utc()
FORMULA_NAME = '=HYPERLINK("http://evil","x")'


def changed(aid: str, name: str, balance: int, days_late: int) -> AccountChanged:
    return AccountChanged(
        account_id=aid, change="created", source="sheet", customer_name=name, phone="+14155550100",
        email=f"{aid.lower()}@example.com", balance_minor=balance, currency="USD",
        due_date=TODAY - timedelta(days=days_late), sms_consent=True, email_consent=True, content_hash="h",
        as_of=NOW - timedelta(days=60), timezone="America/New_York", country="US", region="NY",
    )  # fmt: skip


ACCOUNTS = [
    changed("EX-1", FORMULA_NAME, 50_000, 40),
    changed("EX-2", "Ana Ruiz", 12_345, 10),
    changed("EX-3", "Paid Up", 0, 40),  # nothing left to pay: only with ?all=1
]
TIMELINE: list[Event] = [
    MessageSent(
        account_id="EX-1",
        notice_id="n-1",
        channel="sms",
        status="sent",
        provider="quo",
        to="+14155550100",
        tier="reminder",
        step=1,
        sent_at=NOW - timedelta(days=5),
    ),  # fmt: skip
    OverrideRequested(
        account_id="EX-2",
        override_id="o-1",
        action="record_contact",
        actor="cora",
        role="collector",
        requested_at=NOW - timedelta(hours=1),
        contact_id="mc-1",
        contact_channel="call",
        contact_direction="outbound",
        contact_outcome="reached",
        contacted_at=NOW - timedelta(days=1),
    ),  # fmt: skip
]


def env(ev: Event, at: datetime) -> Envelope:
    return Envelope(
        id=str(uuid.uuid4()), source="test", type=ev.ce_type, time=at, subject=ev.account_id, data=ev
    )


@pytest.fixture(scope="module")
async def stack(broker: Any, fresh_database_url: Callable[..., str]) -> AsyncIterator[dict[str, Any]]:
    url = fresh_database_url("console_export")
    for schema in ("console", "segmenter"):
        await asyncio.to_thread(upgrade, url, schema)
    async with segmenter_api(broker.bootstrap_servers, url, {}) as (seg_client, seg_engine, _):
        # the segmenter plans each account (EX-1: 40 days late, step 2 due now)
        await seg_handle(seg_engine, seg_deps(NOW), *[seg_account(a.account_id, due_date=a.due_date,
                         balance_minor=a.balance_minor) for a in ACCOUNTS])  # fmt: skip
        async with console_host(broker, url) as (host, client):
            assert host.ctx is not None
            async with host.ctx.engine.begin() as conn:  # as the read model's consumer writes them
                tx = Transaction(conn, "console", "console")
                await handlers.handle_events([env(a, a.as_of) for a in ACCOUNTS], tx)
                await handlers.handle_events([env(e, NOW - timedelta(hours=1)) for e in TIMELINE], tx)
                keys = {r: await issue_key_async(conn, r, name=f"{r}-x") for r in ("viewer", "collector", "supervisor", "admin")}  # fmt: skip
            seg_app = seg_client._transport.app  # type: ignore[attr-defined]
            ups = Upstreams(
                {"segmenter": "http://seg"}, httpx.AsyncClient(transport=httpx.ASGITransport(app=seg_app))
            )
            host.ctx.extra["upstreams"] = ups
            yield {"client": client, "keys": keys, "host": host, "ups": ups}
            await ups.close()


async def audit_entries(host: Any) -> list[Any]:
    async with host.ctx.engine.connect() as c:
        return (
            await c.execute(
                text(
                    "SELECT actor, role, after FROM console.audit_log WHERE action = 'export.working_set' ORDER BY seq"
                )
            )
        ).all()


async def test_xlsx_has_the_three_sheets_safe_cells_next_steps_and_drop_downs(stack) -> None:
    c, keys = stack["client"], stack["keys"]
    for role in ("viewer", "collector"):
        assert (await c.get("/exports/working-set", headers=bearer(keys[role]))).status_code == 403
    r = await c.get("/exports/working-set", params={"format": "xlsx"}, headers=bearer(keys["supervisor"]))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert "attachment" in r.headers["content-disposition"]
    wb = load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["Working set", "Contact history", "Manual contacts"]
    ws = [list(row) for row in wb["Working set"].iter_rows(values_only=True)]
    head = ws[0]
    got = {row[0]: dict(zip(head, row, strict=True)) for row in ws[1:]}
    assert sorted(got) == ["EX-1", "EX-2"]  # in arrears only
    one, two = got["EX-1"], got["EX-2"]
    assert one["name"] == "'" + FORMULA_NAME  # never a formula
    assert wb["Working set"]["B2"].data_type == "s"
    assert (one["phone"], one["email"], one["balance"], one["days_past_due"]) == (
        "'+14155550100", "ex-1@example.com", "500.00 USD", 40,  # a leading + is escaped like =, - and @
    )  # fmt: skip
    # never contacted by the segmenter: the first tier first, whatever its age (tone escalates in order)
    assert (one["next_step"], one["next_step_tier"], one["next_step_channels"]) == (
        1,
        "reminder",
        "sms,email",
    )
    assert one["next_step_note"] in (None, "")
    assert (one["last_contact_channel"], one["last_contact_outcome"]) == ("sms", "sent")
    assert (two["last_contact_channel"], two["last_contact_outcome"]) == ("call", "reached")
    assert two["last_contact_at"].startswith((NOW - timedelta(days=1)).date().isoformat())
    history = [list(row) for row in wb["Contact history"].iter_rows(values_only=True)]
    assert history[0] == ["account_id", "at", "kind", "channel", "outcome", "detail"]
    assert [(h[0], h[2], h[3], h[4]) for h in history[1:]] == [
        ("EX-1", "message", "sms", "sent"), ("EX-2", "manual_contact", "call", "reached"),
    ]  # fmt: skip
    manual = wb["Manual contacts"]
    assert [c.value for c in manual[1]] == [
        "account_id", "when", "channel", "direction", "outcome", "note", "promise_amount", "promise_date",
    ]  # fmt: skip
    assert manual.max_row == 1  # empty: to fill in by hand
    lists = {str(dv.sqref): dv.formula1 for dv in manual.data_validations.dataValidation if dv.type == "list"}
    assert lists["C2:C2001"] == '"call,sms,email,letter,visit,other"'
    assert lists["D2:D2001"] == '"outbound,inbound"'
    assert lists["E2:E2001"] == '"reached,no_answer,left_message,wrong_number,refused,other"'
    entries = await audit_entries(stack["host"])
    last = entries[-1]
    assert (last.actor, last.role, last.after["rows"], last.after["format"]) == (
        "supervisor-x",
        "supervisor",
        2,
        "xlsx",
    )
    assert last.after["contact_history_rows"] == 2 and last.after["segmenter"] == "ok"


async def test_csv_sheets_stream_and_all_accounts(stack) -> None:
    c, keys = stack["client"], stack["keys"]
    admin = bearer(keys["admin"])
    r = await c.get("/exports/working-set", params={"format": "csv", "all": "1"}, headers=admin)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(r.text)))
    assert [t["account_id"] for t in table] == ["EX-1", "EX-2", "EX-3"]
    assert table[0]["name"] == "'" + FORMULA_NAME
    r = await c.get(
        "/exports/working-set", params={"format": "csv", "sheet": "contact-history"}, headers=admin
    )
    assert [row["kind"] for row in csv.DictReader(io.StringIO(r.text))] == ["message", "manual_contact"]
    r = await c.get(
        "/exports/working-set", params={"format": "csv", "sheet": "manual-contacts"}, headers=admin
    )
    assert r.text.strip() == "account_id,when,channel,direction,outcome,note,promise_amount,promise_date"
    assert (await c.get("/exports/working-set", params={"format": "pdf"}, headers=admin)).status_code == 422
    entries = await audit_entries(stack["host"])
    assert [(e.after["sheet"], e.after["rows"]) for e in entries[-3:]] == [
        ("working-set", 3), ("contact-history", None), ("manual-contacts", None),
    ]  # fmt: skip


async def test_export_goes_on_when_the_segmenter_is_down(stack) -> None:
    c, keys, host = stack["client"], stack["keys"], stack["host"]
    down = Upstreams({"segmenter": "http://127.0.0.1:9"}, httpx.AsyncClient(timeout=2))
    host.ctx.extra["upstreams"] = down
    try:
        r = await c.get("/exports/working-set", params={"format": "xlsx"}, headers=bearer(keys["supervisor"]))
    finally:
        host.ctx.extra["upstreams"] = stack["ups"]
        await down.close()
    assert r.status_code == 200
    ws = [
        list(row) for row in load_workbook(io.BytesIO(r.content))["Working set"].iter_rows(values_only=True)
    ]
    note = ws[0].index("next_step_note")
    assert len(ws) == 3 and all("segmenter unavailable" in row[note] for row in ws[1:])
    assert all(row[ws[0].index("next_step")] in (None, "") for row in ws[1:])
    assert "segmenter unavailable" in (await audit_entries(host))[-1].after["segmenter"]


async def test_personal_data_masked_for_a_principal_who_may_not_see_it(stack) -> None:
    host = stack["host"]
    blind = Principal(
        name="bi-export", roles=frozenset({"service"}), kind="api_key", subject="k",
        permissions=frozenset({"reports.read", "exports.personal"}),
    )  # fmt: skip

    async def no_steps(ids: list[str]) -> dict[str, dict[str, Any]]:
        return {}

    found = [
        row
        async for row in export_rows.working_set(
            host.ctx.engine, "console", blind, TODAY, False, export_rows.Segmenter(no_steps)
        )
    ]
    by_id = {row[0]: row for row in found}
    assert by_id["EX-2"][1:4] == ["A. R.", "+1••••••••00", "e•••@example.com"]
    assert not any("Ana" in str(v) or "4155550100" in str(v) for row in found for v in row)
    history = [
        row async for row in export_rows.contact_history(host.ctx.engine, "console", blind, TODAY, NOW, False)
    ]
    assert history and all(row[5] == "" for row in history)  # no free text


def test_contact_columns_from_the_timeline_lines() -> None:
    """The console's own timeline lines (readmodels.handlers.summarize) read back as kind, channel, outcome."""
    from arrears_console.readmodels.handlers import summarize

    sent = TIMELINE[0]
    assert export_rows.contact_of(sent.ce_type, summarize(sent)) == ("message", "sms", "sent")
    manual = TIMELINE[1]
    assert export_rows.contact_of(manual.ce_type, summarize(manual)) == ("manual_contact", "call", "reached")
    missed = manual.model_copy(update={"contact_outcome": "no_answer", "contact_channel": "visit"})
    assert export_rows.contact_of(missed.ce_type, summarize(missed)) == (
        "manual_contact",
        "visit",
        "no answer",
    )
    assert export_rows.contact_of(MessageSent.ce_type, "Payment receipt sent by SMS") == (
        "message", "sms", "sent: payment receipt",
    )  # fmt: skip
