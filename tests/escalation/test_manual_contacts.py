"""Manual contacts through escalation's real API (service host, real PostgreSQL, real API keys): recording one
(audited, published for the segmenter through the outbox, on the timeline with who recorded it, idempotent,
refused in the future, before the account, for an unknown account, and for a viewer), importing the manual
tracking sheet (CSV and XLSX: good rows recorded, bad rows named by row number and reason, a second import
records nothing new), and the KPIs counting them as person-made contacts."""

from __future__ import annotations

import io
import json
from datetime import date, datetime, timedelta
from typing import Any

from arrears_escalation.collection.service import compute
from arrears_shared.events import AccountChanged
from arrears_shared.vault import cipher
from auth_support import bearer
from openpyxl import Workbook
from sqlalchemy import text

from .test_api import T0, api, user  # noqa: F401  (the module's service host)
from .test_escalation import handle

OPENED = T0 - timedelta(days=30)
CALL = {
    "channel": "call",
    "direction": "outbound",
    "outcome": "reached",
    "contacted_at": (T0 - timedelta(hours=2)).isoformat(),
    "note": "=spoke with her, pays Friday",
}


def account(aid: str, due: date = date(2026, 5, 1)) -> AccountChanged:
    return AccountChanged(
        account_id=aid, change="created", source="sheet", customer_name="Ada Debtor", phone="+14155550100",
        email="ada@example.com", balance_minor=50_000, currency="USD", due_date=due, sms_consent=True,
        email_consent=True, content_hash="h", as_of=OPENED,
    )  # fmt: skip


async def seeded(host: Any, deps: Any, *ids: str) -> None:
    await handle(host.ctx.engine, deps, *[account(a) for a in ids])


async def overrides(host: Any, aid: str) -> list[dict[str, Any]]:
    async with host.ctx.engine.connect() as c:
        rows = (
            await c.execute(text("SELECT value FROM escalation.outbox WHERE topic='overrides' ORDER BY id"))
        ).all()
    return [e for (v,) in rows if (e := json.loads(bytes(v)))["account_id"] == aid]


async def test_record_a_contact_audited_published_on_the_timeline_and_once(api) -> None:  # noqa: F811
    host, client, deps, keys = api
    await seeded(host, deps, "MC-1", "MC-2")
    collector, viewer = bearer(keys["collector"]), bearer(keys["viewer"])
    assert (await client.post("/accounts/MC-1/contacts", json=CALL, headers=viewer)).status_code == 403
    r = await client.post("/accounts/MC-1/contacts", json=CALL | {"actor": "someone-else"}, headers=collector)
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["recorded"] is True and got["contact_id"].startswith("mc-")
    again = await client.post("/accounts/MC-1/contacts", json=CALL, headers=collector)  # a form sent twice
    assert again.status_code == 200 and again.json() == got | {
        "recorded": False, "override_id": None, "promise_override_id": None, "audit_seq": None,
    }  # fmt: skip
    mine = await overrides(host, "MC-1")
    assert len(mine) == 1
    ev = mine[0]
    assert (ev["action"], ev["actor"], ev["role"], ev["contact_channel"], ev["contact_outcome"]) == (
        "record_contact", user("collector"), "collector", "call", "reached",
    )  # fmt: skip
    assert ev["contact_id"] == got["contact_id"] and ev["contacted_at"].startswith("2026-07-01T10:00")
    async with host.ctx.engine.connect() as c:
        audit = (
            await c.execute(
                text(
                    "SELECT actor, action, reason FROM escalation.audit_log WHERE entity_id='MC-1' ORDER BY seq"
                )
            )
        ).all()
        stored = (
            await c.execute(text("SELECT kind, at, data FROM escalation.activity WHERE id = :i"),
                            {"i": f"contact:MC-1:{got['contact_id']}"})
        ).one()  # fmt: skip
    assert [(a.actor, a.action) for a in audit] == [(user("collector"), "override.record_contact")]
    assert cipher.is_sealed(audit[0].reason) and cipher.is_sealed(stored.data["note"])  # the note, sealed
    assert stored.kind == "contact.manual" and stored.at == T0 - timedelta(hours=2)

    timeline = (await client.get("/accounts/MC-1/timeline", headers=collector)).json()
    line = next(i for i in timeline if i["kind"] == "contact.manual")
    assert line["summary"] == (
        f"call (outbound): reached — recorded by {user('collector')} (collector): =spoke with her, pays Friday"
    )
    assert any(i["kind"] == "audit.override.record_contact" for i in timeline)

    # refused: in the future, before the account existed, an unknown account, a bad channel
    future = CALL | {"contacted_at": (T0 + timedelta(days=1)).isoformat()}
    r = await client.post("/accounts/MC-2/contacts", json=future, headers=collector)
    assert r.status_code == 422 and "in the future" in r.text
    early = CALL | {"contacted_at": (OPENED - timedelta(days=1)).isoformat()}
    r = await client.post("/accounts/MC-2/contacts", json=early, headers=collector)
    assert r.status_code == 422 and "before the account existed" in r.text
    r = await client.post("/accounts/MC-NONE/contacts", json=CALL, headers=collector)
    assert r.status_code == 422 and "unknown account" in r.text
    r = await client.post("/accounts/MC-2/contacts", json=CALL | {"channel": "pigeon"}, headers=collector)
    assert r.status_code == 422
    assert await overrides(host, "MC-2") == []

    # a promise taken in the contact goes the existing promise path too
    body = CALL | {"promise_date": "2026-07-10", "promise_amount_minor": 20_000, "contact_id": "call-77"}
    r = await client.post("/accounts/MC-2/contacts", json=body, headers=collector)
    assert r.status_code == 201 and r.json()["contact_id"] == "call-77"
    assert [e["action"] for e in await overrides(host, "MC-2")] == ["record_contact", "record_promise"]
    promises = (await client.get("/accounts/MC-2/promises", headers=collector)).json()
    assert [(p["promise_id"], p["due_date"], p["amount_minor"]) for p in promises] == [
        ("contact:MC-2:call-77", "2026-07-10", 20_000)
    ]
    # a client's own id is its own per account: the same id on another account is another contact
    other = CALL | {"contact_id": "call-77", "outcome": "no_answer"}
    r = await client.post("/accounts/MC-1/contacts", json=other, headers=collector)
    assert r.status_code == 201 and r.json()["recorded"] is True


def csv_file(rows: list[str]) -> bytes:
    return (
        "account_id,when,channel,direction,outcome,note,promise_amount,promise_date\n" + "\n".join(rows)
    ).encode()


async def test_import_the_manual_sheet_good_rows_recorded_bad_rows_named(api) -> None:  # noqa: F811
    host, client, deps, keys = api
    await seeded(host, deps, "IM-1", "IM-2")
    collector = bearer(keys["collector"])
    data = csv_file(
        [
            "IM-1,2026-07-01 07:30,call,outbound,reached,promised,120.50,2026-07-08",  # row 2: good
            "IM-1,2026-07-01 09:45,pigeon,outbound,reached,,,",  # row 3: no such channel
            ",,,,,,,",  # blank: skipped, but counted as a row number
            "IM-2,2026-07-05 09:00,sms,outbound,no answer,,,",  # row 5: in the future
            "IM-X,2026-06-20 10:00,call,outbound,reached,,,",  # row 6: unknown account
            "IM-2,2026-06-29 10:00,Letter,outbound,Left message,sent the letter,,",  # row 7: good
            "IM-2,yesterday,call,outbound,reached,,,",  # row 8: not a time
            "IM-2,2026-06-29,call,outbound,reached,,,",  # row 9: a date without a time
        ]
    )
    url = "/contacts/import?filename=manual.csv&tz=America/New_York"
    assert (await client.post(url, content=data, headers=bearer(keys["viewer"]))).status_code == 403
    r = await client.post(url, content=data, headers=collector | {"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    res = r.json()
    assert (res["rows"], res["recorded"], res["already_recorded"], res["rejected"]) == (7, 2, 0, 5), res[
        "bad"
    ]
    assert [(g["row"], g["account_id"]) for g in res["good"]] == [(2, "IM-1"), (7, "IM-2")]
    bad = {b["row"]: (b["column"], b["reason"]) for b in res["bad"]}
    assert sorted(bad) == [3, 5, 6, 8, 9]
    assert bad[3][0] == "channel" and "pigeon" in bad[3][1]
    assert bad[5][0] == "when" and "in the future" in bad[5][1]
    assert bad[6][0] == "account_id" and "unknown account" in bad[6][1]
    assert "not a date and time" in bad[8][1] and "needs a time" in bad[9][1]
    ev = await overrides(host, "IM-1")
    assert [e["action"] for e in ev] == ["record_contact", "record_promise"]
    assert ev[0]["contacted_at"].startswith("2026-07-01T11:30")  # 07:30 in New York
    assert ev[1]["promise_amount_minor"] == 12_050
    assert [e["contact_outcome"] for e in await overrides(host, "IM-2")] == ["left_message"]

    again = (await client.post(url, content=data, headers=collector)).json()  # the same file again
    assert (again["recorded"], again["already_recorded"], again["rejected"]) == (0, 2, 5)
    assert len(await overrides(host, "IM-1")) == 2 and len(await overrides(host, "IM-2")) == 1
    async with host.ctx.engine.connect() as c:
        entries = (
            await c.execute(
                text(
                    "SELECT actor, after FROM escalation.audit_log WHERE action = 'contacts.import' ORDER BY seq"
                )
            )
        ).all()
    assert [(e.actor, e.after["recorded"], e.after["rejected_rows"]) for e in entries] == [
        (user("collector"), 2, [3, 5, 6, 8, 9]), (user("collector"), 0, [3, 5, 6, 8, 9]),
    ]  # fmt: skip

    # the XLSX the console exports, filled in: its "Manual contacts" sheet, real date cells
    wb = Workbook()
    wb.active.title = "Working set"
    ws = wb.create_sheet("Manual contacts")
    ws.append(
        ["account_id", "when", "channel", "direction", "outcome", "note", "promise_amount", "promise_date"]
    )
    ws.append(
        ["IM-2", datetime(2026, 6, 30, 15, 0), "visit", "outbound", "reached", "at the shop", None, None]
    )
    ws.append(["IM-2", datetime(2026, 6, 30, 16, 0), "call", "inbound", "maybe", None, None, None])
    buf = io.BytesIO()
    wb.save(buf)
    r = await client.post("/contacts/import?filename=manual.xlsx", content=buf.getvalue(), headers=collector)
    assert r.status_code == 200, r.text
    x = r.json()
    assert (x["recorded"], [(b["row"], b["column"]) for b in x["bad"]]) == (1, [(3, "outcome")])
    assert (await overrides(host, "IM-2"))[-1]["contacted_at"].startswith("2026-06-30T15:00")

    # bounded: not a sheet, or no header
    r = await client.post("/contacts/import?filename=x.xlsx", content=b"PK\x03\x04garbage", headers=collector)
    assert r.status_code == 400
    r = await client.post("/contacts/import", content=b"who,what\n1,2\n", headers=collector)
    assert r.status_code == 400 and "account_id" in r.text


async def test_kpis_count_manual_contacts_as_person_made(api) -> None:  # noqa: F811
    host, client, deps, keys = api
    await seeded(host, deps, "KP-1")
    day = T0.date()

    async def figures() -> dict[tuple[str, str, str], tuple[float | None, float | None]]:
        async with host.ctx.engine.connect() as c:
            return {
                (r["metric"], r["scope"], r["scope_id"]): (r["num"], r["den"]) for r in await compute(c, day)
            }

    before = await figures()
    body = CALL | {"outcome": "no_answer", "contacted_at": (T0 - timedelta(minutes=30)).isoformat()}
    r = await client.post("/accounts/KP-1/contacts", json=body, headers=bearer(keys["supervisor"]))
    assert r.status_code == 201
    after = await figures()
    cov = ("days_in_arrears_coverage", "overall", "all")
    assert after[cov][0] == (before[cov][0] or 0) + 1 and after[cov][1] == before[cov][1]
    rate = ("automated_notification_rate", "overall", "all")
    assert after[rate][0] == (before.get(rate, (0, 0))[0] or 0)  # no automatic message more
    assert after[rate][1] == (before.get(rate, (0, 0))[1] or 0) + 1  # one person-made contact more
    assert after[("automated_notification_rate", "collector", user("supervisor"))] == (0, 1)
