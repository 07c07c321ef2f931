"""The ingest service in-process (real broker, real PostgreSQL, Sheets emulator over HTTP through gspread):
uploads, payment webhooks (signatures, replays, balance/status), sheet write-back (batched, queued while
the sheet is unavailable and replayed when it returns), the sheet outage scenario (degraded mode)."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import os
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from arrears_emulators.sheets import SheetsEmulatorConfig, create_app
from arrears_ingest.__main__ import definition
from arrears_shared.events import AccountChanged, AccountStatus, IngestRejected, PaymentFailed
from arrears_shared.service import ServiceHost
from auth_support import bearer, issue_key_async
from openpyxl import Workbook
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook
from stripe import WebhookSignature

from .sheetdata import HEADER, account_row
from .support import ServerThread, SheetsEmulator, WebhooksStayAnonymous, fast_settings, outbox_since

SID = f"api{uuid.uuid4().hex[:8]}"
STRIPE_SECRET = f"whsec_{uuid.uuid4().hex}"
GENERIC_SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
# the sheet's own header spellings: a custom id header (column map) and no write-back columns yet
SHEET_HEADER = ["Acct #", *HEADER[1:-2]]


def sheet_row(i: int, prefix: str = "S-", **kw: str) -> list[str]:
    return account_row(i, **{"Account ID": f"{prefix}{i}", **kw})[:-2]


@pytest.fixture(scope="module")
def emulator() -> Iterator[SheetsEmulator]:
    server = ServerThread(create_app(SheetsEmulatorConfig())).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as control:
            yield SheetsEmulator(url=server.url, control=control)
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def service(
    broker: Any, fresh_database_url: Callable[..., str], emulator: SheetsEmulator
) -> AsyncIterator[tuple[ServiceHost, httpx.AsyncClient]]:
    emulator.load(SID, {"Accounts": [SHEET_HEADER, *(sheet_row(i) for i in range(1, 6))]})
    settings = fast_settings(
        broker.bootstrap_servers,
        fresh_database_url("ingest_api"),
        emulator.url,
        SID,
        sheets_writes_per_minute=6000,
        ingest_writeback_retry_s=0.2,
        ingest_writeback_ranges_per_request=2,
        ingest_column_map={"Acct #": "Account ID"},
        # in-process host: validate in a thread (worker processes would outlive the test's host in the form
        # of multiprocessing's resource tracker); the process pool is covered by test_service_e2e
        ingest_validation_workers=0,
        payments_stripe_webhook_secret=STRIPE_SECRET,
        payments_webhook_secret=GENERIC_SECRET,
    )
    host = ServiceHost(definition(settings))
    app = host.build_app()
    await host.start()
    try:
        async with engine(host).begin() as conn:
            key = await issue_key_async(conn, "supervisor")
        # the supervisor's key on every call but the payment webhooks: those are public (signed), and the
        # tests below keep proving they work without any credential
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://ingest",
            auth=WebhooksStayAnonymous(key),
        ) as client:

            async def startup_poll_done() -> bool:
                items = (await client.get("/ingest/runs")).json()["items"]
                return bool(items) and items[0]["status"] == "succeeded"

            await wait_for(startup_poll_done, what="the start-up poll")
            yield host, client
    finally:
        await host.stop()


def engine(host: ServiceHost) -> Any:
    assert host.ctx is not None
    return host.ctx.engine


async def wait_for(check: Callable[[], Any], within_s: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + within_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def last_outbox_id(host: ServiceHost) -> int:
    async with engine(host).connect() as c:
        return int((await c.execute(text("SELECT coalesce(max(id), 0) FROM ingest.outbox"))).scalar_one())


def sheet_values(emulator: SheetsEmulator) -> list[list[str]]:
    return emulator.dump(SID)["sheets"]["Accounts"]  # type: ignore[index]


def outcome_cells(values: list[list[str]]) -> dict[str, tuple[str, str]]:
    h = values[0]
    s, r = h.index("Arrears Status"), h.index("Arrears Reason")
    pad = [row + [""] * (len(h) - len(row)) for row in values[1:]]
    return {row[0] or f"row{n}": (row[s], row[r]) for n, row in enumerate(pad, start=2)}


async def pending_writebacks(host: ServiceHost) -> int:
    async with engine(host).connect() as c:
        return int((await c.execute(text("SELECT count(*) FROM ingest.writeback"))).scalar_one())


# -- sheet write-back --------------------------------------------------------------------------------------


async def test_writeback_adds_columns_and_marks_every_row(
    service: tuple[ServiceHost, httpx.AsyncClient], emulator: SheetsEmulator
) -> None:
    host, client = service
    rows = [SHEET_HEADER, *(sheet_row(i) for i in range(1, 6))]
    rows[2] = sheet_row(2, Phone="12345")  # accepted, SMS disabled -> warning
    rows[3] = sheet_row(3, Balance="lots")  # rejected
    rows.append(["", "No Id", "", "", "10", "", "2025-01-01"])  # rejected, no id
    emulator.load(SID, {"Accounts": rows})
    run = (await client.post("/ingest/sheet")).json()
    assert run["status"] == "succeeded" and run["rejected"] == 2, run
    await wait_for(lambda: _zero(pending_writebacks(host)), what="write-back flush")
    values = sheet_values(emulator)
    assert values[0][-2:] == ["Arrears Status", "Arrears Reason"]  # added after the last header
    cells = outcome_cells(values)
    assert cells["S-1"] == ("accepted", "")
    assert cells["S-2"][0] == "accepted with warnings" and "Phone" in cells["S-2"][1]
    assert "SMS disabled" in cells["S-2"][1]
    assert cells["S-3"][0] == "rejected" and cells["S-3"][1].startswith("Balance: ")
    assert cells["row7"][0] == "rejected" and "Account ID is required" in cells["row7"][1]

    # an unchanged sheet costs no write requests and emits nothing
    writes = emulator.stats()["writes"]
    mark = await last_outbox_id(host)
    again = (await client.post("/ingest/sheet")).json()
    assert (again["status"], again["created"], again["updated"], again["removed"]) == ("succeeded", 0, 0, 0)
    await asyncio.sleep(0.5)
    assert emulator.stats()["writes"] == writes
    assert (await outbox_since(engine(host), mark))[1] == []

    # fixing the rejected row flips its outcome
    values = sheet_values(emulator)
    fixed = [list(r) for r in values]
    fixed[3][HEADER.index("Balance")] = "$30.00"
    emulator.load(SID, {"Accounts": fixed})
    # (S-3 was accepted at start-up: a rejected row keeps its last good snapshot, so this is an update)
    assert (await client.post("/ingest/sheet")).json()["updated"] == 1
    await wait_for(lambda: _zero(pending_writebacks(host)), what="write-back flush")
    assert outcome_cells(sheet_values(emulator))["S-3"] == ("accepted", "")


async def _zero(n: Any) -> bool:
    return (await n) == 0


async def test_writeback_queued_on_quota_exhaustion_and_replayed_to_moved_rows(
    service: tuple[ServiceHost, httpx.AsyncClient], emulator: SheetsEmulator
) -> None:
    host, client = service
    header = [*SHEET_HEADER, "Arrears Status", "Arrears Reason"]
    rows = [header, *(sheet_row(i, "Q-") + ["", ""] for i in range(1, 8))]
    rows[4] = sheet_row(4, "Q-", **{"Due Date": "someday"}) + ["", ""]
    emulator.load(SID, {"Accounts": rows})
    emulator.limits(write_requests_per_minute_per_user=0)  # every write answers 429
    try:
        run = (await client.post("/ingest/sheet")).json()
        assert run["status"] == "succeeded", run  # reads are fine: the run itself is not affected
        assert await pending_writebacks(host) == 7
        assert emulator.stats()["throttled_writes"] >= 3  # first try + 2 backoff retries
        metrics = (await client.get("/metrics")).text
        assert "arrears_ingest_writeback_pending 7.0" in metrics
        # meanwhile someone inserts a row at the top: queued outcomes must follow their accounts
        moved = [header, sheet_row(99, "Q-") + ["", ""], *rows[1:]]
        emulator.load(SID, {"Accounts": moved})
    finally:
        emulator.limits()  # defaults again
    await wait_for(lambda: _zero(pending_writebacks(host)), what="replayed write-back")
    cells = outcome_cells(sheet_values(emulator))
    assert cells["Q-4"][0] == "rejected" and cells["Q-4"][1].startswith("Due Date: ")
    assert all(cells[f"Q-{i}"] == ("accepted", "") for i in (1, 2, 3, 5, 6, 7))
    assert cells["Q-99"] == ("", "")  # not validated yet: nothing was queued for it


async def test_run_that_waited_out_the_read_quota_is_marked_degraded(
    service: tuple[ServiceHost, httpx.AsyncClient], emulator: SheetsEmulator
) -> None:
    """Issue #13: a 429 on the read is waited out (the quota refills) and the run says so: `degraded`, and
    how long it waited (`quota_waited_s`), in `GET /ingest/runs`; a run that did not wait is not degraded."""
    _, client = service
    emulator.load(SID, {"Accounts": [SHEET_HEADER, *(sheet_row(i, "D-") for i in range(1, 4))]})
    try:
        emulator.limits(lifted=True)  # whatever earlier tests spent: this run must not wait
        normal = (await client.post("/ingest/sheet")).json()
        assert normal["status"] == "succeeded", normal
        assert normal["degraded"] is False and normal["quota_waited_s"] == 0
        # one read per 0.4 s: a request that finds the window spent gets a 429 and waits it out (the
        # emulator's Retry-After, whole seconds), inside the test's 1 s bound per request
        emulator.limits(read_requests_per_minute_per_user=1, window_s=0.4, send_retry_after=True)
        waited = (await client.post("/ingest/sheet")).json()
    finally:
        emulator.limits()  # defaults again
    assert waited["status"] == "succeeded", waited
    assert waited["degraded"] is True and waited["quota_waited_s"] > 0, waited
    runs = {r["id"]: r for r in (await client.get("/ingest/runs")).json()["items"]}
    assert (runs[waited["id"]]["degraded"], runs[waited["id"]]["quota_waited_s"]) == (
        True,
        waited["quota_waited_s"],
    )
    assert (runs[normal["id"]]["degraded"], runs[normal["id"]]["quota_waited_s"]) == (False, 0)


# -- uploads ----------------------------------------------------------------------------------------------


def csv_bytes(rows: list[list[str]], delimiter: str = ",") -> bytes:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter).writerows(rows)
    return buf.getvalue().encode("utf-8-sig")


def xlsx_bytes(rows: list[list[Any]]) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Accounts"
    for r in rows:
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def changed(envs: list[Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in envs:
        if isinstance(e.data, AccountChanged):
            out.setdefault(e.data.change, []).append(e.data.account_id)
    return {k: sorted(v) for k, v in out.items()}


async def test_csv_and_xlsx_uploads(service: tuple[ServiceHost, httpx.AsyncClient]) -> None:
    host, client = service
    rows = [HEADER, *(account_row(i, **{"Account ID": f"U-{i}"}) for i in range(1, 5))]
    rows[4] = account_row(4, **{"Account ID": "U-4", "Due Date": "31/31/2025"})
    mark = await last_outbox_id(host)
    r = await client.post("/ingest/upload?filename=pme.csv", content=csv_bytes(rows, ";"))
    assert r.status_code == 200, r.text
    assert (r.json()["source"], r.json()["created"], r.json()["rejected"]) == ("upload", 3, 1)
    mark, envs = await outbox_since(engine(host), mark)
    assert changed(envs) == {"created": ["U-1", "U-2", "U-3"]}
    assert all(e.data.source == "upload" for e in envs if isinstance(e.data, AccountChanged))
    (rej,) = [e.data for e in envs if isinstance(e.data, IngestRejected)]
    assert (rej.source, rej.row_number, rej.column) == ("upload", 5, "Due Date")

    # the same accounts as XLSX with real dates and numbers: no change, no events
    typed: list[list[Any]] = [HEADER]
    for i in range(1, 4):
        row: list[Any] = account_row(i, **{"Account ID": f"U-{i}"})
        v = AccountChangedView.of(rows[i])
        row[HEADER.index("Balance")] = v.balance
        row[HEADER.index("Due Date")] = v.due
        typed.append(row)
    r = await client.post(
        "/ingest/upload",
        params={"filename": "pme.xlsx", "worksheet": "accounts"},
        content=xlsx_bytes(typed),
    )
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["updated"], r.json()["rejected"]) == (0, 0, 0), r.json()
    mark, envs = await outbox_since(engine(host), mark)
    assert changed(envs) == {}

    # replace: the file is the whole master -> accounts absent from it are removed (history kept)
    r = await client.post(
        "/ingest/upload?mode=replace&filename=all.csv",
        content=csv_bytes([HEADER, *(account_row(i, **{"Account ID": f"U-{i}"}) for i in (1, 2))]),
    )
    assert r.status_code == 200 and r.json()["removed"] >= 1, r.text
    _, envs = await outbox_since(engine(host), mark)
    assert "U-3" in changed(envs)["removed"]

    # bad files: a clear error and nothing else changes
    assert (await client.post("/ingest/upload?filename=x.xlsx", content=b"not a zip")).status_code == 400
    assert (await client.post("/ingest/upload", content=b"")).status_code == 400
    bad = await client.post("/ingest/upload", content=csv_bytes([["Name", "Phone"], ["A", "1"]]))
    assert bad.status_code == 422 and "missing required column" in bad.json()["error"]
    assert (await client.post("/ingest/upload", content=b"\x00\x01" * 10)).status_code == 400


async def test_xlsx_decompression_bomb_upload_is_refused_and_nothing_is_ingested(
    service: tuple[ServiceHost, httpx.AsyncClient],
) -> None:
    """A workbook with valid account rows plus a 300 MiB zero-filled part (a ~300 kB upload): 400 with the
    reason, no run, no event."""
    host, client = service
    good = xlsx_bytes([HEADER, *(account_row(i, **{"Account ID": f"B-{i}"}) for i in range(1, 4))])
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(good)) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z,
    ):
        for info in src.infolist():
            z.writestr(info.filename, src.read(info))
        with z.open("xl/media/image1.bin", "w") as f:
            for _ in range(300):
                f.write(bytes(1024 * 1024))
    bomb = out.getvalue()
    assert len(bomb) < 1_000_000

    mark = await last_outbox_id(host)
    async with engine(host).connect() as c:
        runs_before = (await c.execute(text("SELECT count(*) FROM ingest.runs"))).scalar_one()
    r = await client.post("/ingest/upload", params={"filename": "pme.xlsx"}, content=bomb)
    assert r.status_code == 400, r.text
    assert "possible decompression bomb" in r.json()["detail"], r.text
    _, envs = await outbox_since(engine(host), mark)
    assert envs == []
    async with engine(host).connect() as c:
        assert (await c.execute(text("SELECT count(*) FROM ingest.runs"))).scalar_one() == runs_before


class AccountChangedView:
    """Typed cell values (a float balance, a datetime due date) for the XLSX upload."""

    def __init__(self, balance: float, due: Any) -> None:
        self.balance, self.due = balance, due

    @classmethod
    def of(cls, row: list[str]) -> AccountChangedView:
        from datetime import datetime

        bal = float(row[HEADER.index("Balance")].replace("$", "").replace(",", ""))
        due = datetime.strptime(row[HEADER.index("Due Date")], "%m/%d/%Y")
        return cls(bal, due)


# -- payments ----------------------------------------------------------------------------------------------


def stripe_event(account: str, amount: int, pi: str, *, kind: str = "payment_intent.succeeded") -> bytes:
    obj: dict[str, Any] = {
        "id": pi if kind == "payment_intent.succeeded" else f"ch_{uuid.uuid4().hex[:12]}",
        "object": "payment_intent" if kind == "payment_intent.succeeded" else "charge",
        "amount": amount,
        "amount_received": amount,
        "amount_captured": amount,
        "currency": "usd",
        "created": int(time.time()),
        "metadata": {"account_id": account},
    }
    if kind == "charge.succeeded":
        obj["payment_intent"] = pi
    return json.dumps(
        {"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": kind, "data": {"object": obj}}
    ).encode()


def stripe_headers(body: bytes, secret: str = STRIPE_SECRET, ts: int | None = None) -> dict[str, str]:
    sig = WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=ts)
    return {"Stripe-Signature": sig, "content-type": "application/json"}


def generic_headers(body: bytes, msg_id: str | None = None, secret: str = GENERIC_SECRET) -> dict[str, str]:
    from datetime import UTC, datetime

    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    sig = Webhook(secret).sign(msg_id, now, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": sig,
        "content-type": "application/json",
    }


async def balance_of(host: ServiceHost, account: str) -> tuple[int, str]:
    async with engine(host).connect() as c:
        data = (
            await c.execute(text("SELECT data FROM ingest.snapshot WHERE account_id = :a"), {"a": account})
        ).scalar_one()
    return data["balance_minor"], data["status"]


async def seed_accounts(client: httpx.AsyncClient, prefix: str, balances: dict[int, str]) -> None:
    rows = [
        HEADER,
        *(account_row(i, **{"Account ID": f"{prefix}{i}", "Balance": b}) for i, b in balances.items()),
    ]
    r = await client.post("/ingest/upload", content=csv_bytes(rows))
    assert r.status_code == 200 and r.json()["created"] == len(balances), r.text


async def test_stripe_payment_applies_once_and_forgeries_are_refused(
    service: tuple[ServiceHost, httpx.AsyncClient],
) -> None:
    host, client = service
    await seed_accounts(client, "P-", {1: "$100.00", 2: "$50.00"})
    mark = await last_outbox_id(host)
    pi = f"pi_{uuid.uuid4().hex[:12]}"
    body = stripe_event("P-1", 4000, pi)
    r = await client.post("/ingest/payments/stripe", content=body, headers=stripe_headers(body))
    assert r.status_code == 200, r.text
    assert r.json() | {"payment_id": None} == {
        "status": "applied",
        "account_id": "P-1",
        "payment_id": None,
        "balance_minor": 6000,
        "currency": "USD",
        "account_status": "open",
        "reason": None,
    }
    _, envs = await outbox_since(engine(host), mark)
    (ev,) = [e.data for e in envs]
    assert isinstance(ev, AccountChanged)
    assert (ev.change, ev.source, ev.balance_minor, ev.last_payment_minor) == (
        "payment",
        "payment",
        6000,
        4000,
    )
    assert ev.status is AccountStatus.OPEN and ev.sms_consent  # consent is kept on a payment

    # replay of the same delivery, and the same payment announced by another event type: applied once
    assert (await client.post("/ingest/payments/stripe", content=body, headers=stripe_headers(body))).json()[
        "status"
    ] == "replayed"
    charge = stripe_event("P-1", 4000, pi, kind="charge.succeeded")
    assert (
        await client.post("/ingest/payments/stripe", content=charge, headers=stripe_headers(charge))
    ).json()["status"] == "duplicate"
    # forged (wrong secret), tampered body, stale timestamp, no header: 400 and nothing changes
    forged = stripe_event("P-1", 6000, f"pi_{uuid.uuid4().hex[:12]}")
    for headers, content in (
        (stripe_headers(forged, secret="whsec_attacker"), forged),
        (stripe_headers(body), body.replace(b"4000", b"9999")),
        (stripe_headers(forged, ts=int(time.time()) - 3600), forged),
        ({"content-type": "application/json"}, forged),
        ({"Stripe-Signature": "garbage"}, forged),
    ):
        resp = await client.post("/ingest/payments/stripe", content=content, headers=headers)
        assert resp.status_code == 400, resp.text
    assert await balance_of(host, "P-1") == (6000, "open")

    # paying the rest closes the balance: status paid, at once
    rest = stripe_event("P-1", 6000, f"pi_{uuid.uuid4().hex[:12]}")
    out = (await client.post("/ingest/payments/stripe", content=rest, headers=stripe_headers(rest))).json()
    assert (out["status"], out["balance_minor"], out["account_status"]) == ("applied", 0, "paid")
    _, envs = await outbox_since(engine(host), mark)
    payments = [e.data for e in envs if isinstance(e.data, AccountChanged)]
    assert [(p.balance_minor, p.status) for p in payments] == [(6000, "open"), (0, "paid")]

    # unknown account: kept visible as a payment reject, not lost
    lost = stripe_event("NOPE-1", 500, f"pi_{uuid.uuid4().hex[:12]}")
    out = (await client.post("/ingest/payments/stripe", content=lost, headers=stripe_headers(lost))).json()
    assert out["status"] == "rejected" and out["reason"] == "unknown account"
    rj = (await client.get("/ingest/rejects", params={"source": "payment"})).json()
    assert any(i["account_id"] == "NOPE-1" and i["balance_minor"] == 500 for i in rj["items"])


async def test_generic_payment_webhook(service: tuple[ServiceHost, httpx.AsyncClient]) -> None:
    host, client = service
    await seed_accounts(client, "G-", {1: "1,234.50"})
    body = json.dumps(
        {
            "type": "payment.succeeded",
            "data": {"payment_id": "tx-1", "account_id": "G-1", "amount": "234.50", "currency": "usd"},
        }
    ).encode()
    headers = generic_headers(body)
    r = await client.post("/ingest/payments/webhook", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["balance_minor"] == 100_000, r.text
    assert (await client.post("/ingest/payments/webhook", content=body, headers=headers)).json()[
        "status"
    ] == "replayed"
    # a new delivery of the same payment id is a duplicate, not a second payment
    again = await client.post("/ingest/payments/webhook", content=body, headers=generic_headers(body))
    assert again.json()["status"] == "duplicate"
    other_secret = "whsec_" + base64.b64encode(b"x" * 32).decode()
    forged = await client.post(
        "/ingest/payments/webhook", content=body, headers=generic_headers(body, secret=other_secret)
    )
    assert forged.status_code == 400
    bad = json.dumps({"type": "payment.succeeded", "data": {"payment_id": "tx-2"}}).encode()
    assert (
        await client.post("/ingest/payments/webhook", content=bad, headers=generic_headers(bad))
    ).status_code == 400
    ignored = json.dumps({"type": "customer.updated", "data": {}}).encode()
    assert (
        await client.post("/ingest/payments/webhook", content=ignored, headers=generic_headers(ignored))
    ).json()["status"] == "ignored"
    assert await balance_of(host, "G-1") == (100_000, "open")


async def test_payment_survives_sheet_runs_until_the_sheet_books_it(
    service: tuple[ServiceHost, httpx.AsyncClient], emulator: SheetsEmulator
) -> None:
    """The sheet lags behind the payment gateway: its old balance must not undo a payment."""
    host, client = service
    header = [*SHEET_HEADER, "Arrears Status", "Arrears Reason"]
    rows = [header, sheet_row(1, "R-", Balance="$80.00") + ["", ""]]
    emulator.load(SID, {"Accounts": rows})
    assert (await client.post("/ingest/sheet")).json()["created"] == 1
    body = stripe_event("R-1", 3000, f"pi_{uuid.uuid4().hex[:12]}")
    assert (await client.post("/ingest/payments/stripe", content=body, headers=stripe_headers(body))).json()[
        "balance_minor"
    ] == 5000
    mark = await last_outbox_id(host)
    # unchanged row, then a phone edit (balance still the pre-payment one): the payment stands
    assert (await client.post("/ingest/sheet")).json()["updated"] == 0
    rows[1] = sheet_row(1, "R-", Balance="$80.00", Phone="(212) 555-0199") + ["", ""]
    emulator.load(SID, {"Accounts": rows})
    run = (await client.post("/ingest/sheet")).json()
    assert run["updated"] == 1
    _, envs = await outbox_since(engine(host), mark)
    (ev,) = [e.data for e in envs if isinstance(e.data, AccountChanged)]
    assert (ev.balance_minor, ev.phone, ev.last_payment_minor) == (5000, "+12125550199", 3000)
    # the PME books the payment: the sheet's balance wins from now on
    rows[1] = sheet_row(1, "R-", Balance="$50.00", Phone="(212) 555-0199") + ["", ""]
    emulator.load(SID, {"Accounts": rows})
    await client.post("/ingest/sheet")
    assert await balance_of(host, "R-1") == (5000, "open")
    rows[1] = sheet_row(1, "R-", Balance="$45.00", Phone="(212) 555-0199") + ["", ""]
    emulator.load(SID, {"Accounts": rows})
    assert (await client.post("/ingest/sheet")).json()["updated"] == 1
    assert await balance_of(host, "R-1") == (4500, "open")


# -- outage ------------------------------------------------------------------------------------------------


async def test_outage_serves_last_snapshot_accepts_uploads_and_payments_then_recovers(
    service: tuple[ServiceHost, httpx.AsyncClient], emulator: SheetsEmulator
) -> None:
    host, client = service
    header = [*SHEET_HEADER, "Arrears Status", "Arrears Reason"]
    rows = [header, *(sheet_row(i, "O-") + ["", ""] for i in range(1, 4))]
    emulator.load(SID, {"Accounts": rows})
    assert (await client.post("/ingest/sheet")).json()["status"] == "succeeded"
    await wait_for(lambda: _zero(pending_writebacks(host)), what="write-back flush")
    emulator.fault(kind="outage", enabled=True)
    try:
        failed = (await client.post("/ingest/sheet")).json()
        assert failed["status"] == "failed" and "503" in failed["error"]
        check = (await client.get("/readyz")).json()["checks"]["sheet_source"]
        assert check["ok"] is True and check["detail"].startswith("degraded since")
        assert 'arrears_ingest_degraded{source="sheet"} 1.0' in (await client.get("/metrics")).text
        # the last good snapshot is intact: nothing removed
        async with engine(host).connect() as c:
            n = (
                await c.execute(text("SELECT count(*) FROM ingest.snapshot WHERE account_id LIKE 'O-%'"))
            ).scalar_one()
        assert n == 3
        # uploads and payments keep working
        up = await client.post(
            "/ingest/upload", content=csv_bytes([HEADER, account_row(9, **{"Account ID": "O-9"})])
        )
        assert up.json()["created"] == 1
        pay = stripe_event("O-9", 100, f"pi_{uuid.uuid4().hex[:12]}")
        assert (
            await client.post("/ingest/payments/stripe", content=pay, headers=stripe_headers(pay))
        ).json()["status"] == "applied"
        # a sheet edit made during the outage is picked up, and its write-back queued then replayed
        rows[2] = sheet_row(2, "O-", Balance="n/a") + ["", ""]
        emulator.load(SID, {"Accounts": rows})
    finally:
        emulator.control.delete("/_emulator/faults").raise_for_status()
    recovered = (await client.post("/ingest/sheet")).json()
    assert (recovered["status"], recovered["removed"], recovered["rejected"]) == ("succeeded", 0, 1)
    assert (await client.get("/readyz")).json()["checks"]["sheet_source"]["detail"].startswith("ok")
    await wait_for(lambda: _zero(pending_writebacks(host)), what="write-back after recovery")
    assert outcome_cells(sheet_values(emulator))["O-2"][0] == "rejected"
    # the uploaded account is not in the sheet but was created by the upload: the sheet does not remove it
    assert await balance_of(host, "O-9") == (
        int(account_row(9)[HEADER.index("Balance")].replace("$", "").replace(",", "").replace(".", "")) - 100,
        "open",
    )


# -- failed payments ---------------------------------------------------------------------------------------


def stripe_failure(account: str, pi: str, charge: str, *, kind: str = "charge.failed") -> bytes:
    if kind == "charge.failed":
        obj: dict[str, Any] = {
            "id": charge,
            "object": "charge",
            "amount": 2500,
            "currency": "usd",
            "payment_intent": pi,
            "failure_code": "card_declined",
            "failure_message": "Your card was declined.",
        }
    else:
        obj = {
            "id": pi,
            "object": "payment_intent",
            "amount": 2500,
            "currency": "usd",
            "latest_charge": charge,
            "last_payment_error": {
                "type": "card_error",
                "code": "card_declined",
                "decline_code": "insufficient_funds",
                "message": "Your card has insufficient funds.",
                "charge": charge,
            },
        }
    obj |= {"created": int(time.time()), "metadata": {"account_id": account}}
    return json.dumps(
        {"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": kind, "data": {"object": obj}}
    ).encode()


async def test_failed_payments_are_recorded_once_and_published_balance_unchanged(
    service: tuple[ServiceHost, httpx.AsyncClient],
) -> None:
    host, client = service
    await seed_accounts(client, "F-", {1: "$100.00", 2: "$40.00"})
    mark = await last_outbox_id(host)
    pi, ch = f"pi_{uuid.uuid4().hex[:12]}", f"ch_{uuid.uuid4().hex[:12]}"
    body = stripe_failure("F-1", pi, ch)
    r = await client.post("/ingest/payments/stripe", content=body, headers=stripe_headers(body))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "status": "failed",
        "account_id": "F-1",
        "payment_id": pi,
        "balance_minor": 10_000,
        "currency": "USD",
        "account_status": "open",
        "reason": "card_declined",
    }
    # the same declined charge announced by the PaymentIntent event: one failure; a replayed delivery: no-op
    again = stripe_failure("F-1", pi, ch, kind="payment_intent.payment_failed")
    assert (
        await client.post("/ingest/payments/stripe", content=again, headers=stripe_headers(again))
    ).json()["status"] == "duplicate"
    assert (await client.post("/ingest/payments/stripe", content=body, headers=stripe_headers(body))).json()[
        "status"
    ] == "replayed"
    # forged or tampered: 400, nothing recorded
    forged = stripe_failure("F-1", pi, f"ch_{uuid.uuid4().hex[:12]}")
    for headers, content in (
        (stripe_headers(forged, secret="whsec_attacker"), forged),
        (stripe_headers(body), body.replace(b"F-1", b"F-2")),
        ({"content-type": "application/json"}, forged),
    ):
        assert (
            await client.post("/ingest/payments/stripe", content=content, headers=headers)
        ).status_code == 400
    # the customer retries the same PaymentIntent with another card and it fails again: a new failure
    retry = stripe_failure("F-1", pi, f"ch_{uuid.uuid4().hex[:12]}", kind="payment_intent.payment_failed")
    out = (await client.post("/ingest/payments/stripe", content=retry, headers=stripe_headers(retry))).json()
    assert (out["status"], out["reason"]) == ("failed", "insufficient_funds")

    # generic: payment.failed, amount optional (given here as a decimal string)
    gbody = json.dumps(
        {
            "type": "payment.failed",
            "data": {
                "payment_id": "gtx-9",
                "account_id": "F-2",
                "amount": "40.00",
                "currency": "usd",
                "failure_code": "insufficient_funds",
                "failed_at": "2026-05-04T10:00:00+00:00",
            },
        }
    ).encode()
    out = (
        await client.post("/ingest/payments/webhook", content=gbody, headers=generic_headers(gbody))
    ).json()
    assert (out["status"], out["balance_minor"]) == ("failed", 4000)
    assert (
        await client.post("/ingest/payments/webhook", content=gbody, headers=generic_headers(gbody))
    ).json()["status"] == "duplicate"
    bad = json.dumps(
        {"type": "payment.failed", "data": {"payment_id": "x", "account_id": "F-2", "amount": "1"}}
    )
    assert (
        await client.post(
            "/ingest/payments/webhook", content=bad.encode(), headers=generic_headers(bad.encode())
        )
    ).status_code == 400  # an amount without its currency
    # unknown account: a payment reject, visible, not lost
    lost = stripe_failure("NOPE-F", f"pi_{uuid.uuid4().hex[:12]}", f"ch_{uuid.uuid4().hex[:12]}")
    out = (await client.post("/ingest/payments/stripe", content=lost, headers=stripe_headers(lost))).json()
    assert (out["status"], out["reason"]) == ("rejected", "unknown account")

    # published: one PaymentFailed per failed attempt on account-changed, keyed by the account; balances as before
    _, envs = await outbox_since(engine(host), mark)
    failed = [e for e in envs if isinstance(e.data, PaymentFailed)]
    assert [(e.data.account_id, e.data.failure_code) for e in failed] == [
        ("F-1", "card_declined"),
        ("F-1", "insufficient_funds"),
        ("F-2", "insufficient_funds"),
    ]
    first = failed[0].data
    assert (first.payment_id, first.failure_id, first.amount_minor, first.currency, first.balance_minor) == (
        pi,
        ch,
        2500,
        "USD",
        10_000,
    )
    assert failed[0].id == f"payment-failed:stripe:{ch}" and failed[0].data.topic == "account-changed"
    assert failed[2].data.amount_minor == 4000 and failed[2].data.failed_at.isoformat().startswith(
        "2026-05-04"
    )
    assert not [e for e in envs if isinstance(e.data, AccountChanged)]  # the accounts did not change
    assert [e.data.account_id for e in envs if isinstance(e.data, IngestRejected)] == ["NOPE-F"]
    assert await balance_of(host, "F-1") == (10_000, "open")
    assert await balance_of(host, "F-2") == (4000, "open")


# -- access: who may upload and read rejects, and the audit entry of an upload ------------------------------


async def test_an_upload_is_audited_under_the_key_name_and_roles_are_enforced(
    service: tuple[ServiceHost, httpx.AsyncClient],
) -> None:
    host, client = service
    name = f"pme-supervisor-{uuid.uuid4().hex[:8]}"
    async with engine(host).begin() as conn:
        supervisor = await issue_key_async(conn, "supervisor", name=name)
        collector = await issue_key_async(conn, "collector")
        viewer = await issue_key_async(conn, "viewer")

    async def run_count() -> int:
        async with engine(host).connect() as c:
            return int((await c.execute(text("SELECT count(*) FROM ingest.runs"))).scalar_one())

    body = csv_bytes([HEADER, *(account_row(i, **{"Account ID": f"AU-{i}"}) for i in (1, 2))])
    runs_before = await run_count()
    # no credential: 401; a collector (works accounts, does not feed the master data): 403; nothing runs
    anonymous = await client.post("/ingest/upload", content=body, auth=None)
    assert anonymous.status_code == 401, anonymous.text
    refused = await client.post("/ingest/upload", content=body, headers=bearer(collector))
    assert refused.status_code == 403, refused.text
    assert "ingest.run" in refused.json()["detail"]
    assert await run_count() == runs_before

    r = await client.post(
        "/ingest/upload", params={"filename": "audited.csv"}, content=body, headers=bearer(supervisor)
    )
    assert r.status_code == 200, r.text
    run = r.json()
    assert (run["source"], run["created"]) == ("upload", 2)
    async with engine(host).connect() as c:
        entries = (
            await c.execute(
                text(
                    "SELECT actor, role, action, entity, entity_id, after FROM ingest.audit_log "
                    "WHERE action = 'ingest.upload' AND entity_id = :id"
                ),
                {"id": str(run["id"])},
            )
        ).all()
    assert len(entries) == 1, entries
    (entry,) = entries
    assert (entry.actor, entry.role, entry.entity) == (name, "supervisor", "ingest_run")
    assert entry.after["filename"] == "audited.csv" and entry.after["mode"] == "merge"
    assert (entry.after["status"], entry.after["created"], entry.after["bytes"]) == (
        "succeeded",
        2,
        len(body),
    )

    # rejected rows carry raw sheet values: a viewer (aggregates only) may not read them
    denied = await client.get("/ingest/rejects", headers=bearer(viewer))
    assert denied.status_code == 403, denied.text
    assert (await client.get("/ingest/rejects.csv", headers=bearer(viewer))).status_code == 403
    assert (await client.get("/ingest/rejects", headers=bearer(supervisor))).status_code == 200
