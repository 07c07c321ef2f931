"""The console's Ingest page over ingest's real API (served on a local port, Sheets emulator behind it):
runs, rejects with the fix to make in the sheet, "Run the sheet now", the rejects CSV. And every reason the
validation (and the payment webhooks) can give has a fix."""

from __future__ import annotations

import ast
import csv
import io
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import arrears_ingest
import httpx
import pytest
from arrears_console.__main__ import definition as console_definition
from arrears_console.settings import ConsoleSettings
from arrears_emulators.sheets import SheetsEmulatorConfig, create_app
from arrears_ingest.__main__ import definition as ingest_definition
from arrears_ingest.validation.fixes import fix_for
from arrears_shared.service import ServiceHost
from auth_support import bearer, issue_key_async
from ingest.sheetdata import HEADER, account_row
from ingest.support import ServerThread, SheetsEmulator, fast_settings

from .support import eventually, serve

SID = f"ops{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def sheets() -> Iterator[SheetsEmulator]:
    server = ServerThread(create_app(SheetsEmulatorConfig())).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as control:
            yield SheetsEmulator(url=server.url, control=control)
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def stack(
    broker: Any, fresh_database_url: Callable[..., str], sheets: SheetsEmulator
) -> AsyncIterator[dict[str, Any]]:
    rows = [
        account_row(1),
        account_row(2, Balance="abc"),
        account_row(3, **{"Due Date": "someday"}),
        account_row(4, **{"Customer Name": ""}),
        account_row(1, **{"Customer Name": "Same Id"}),  # duplicate Account ID
    ]
    sheets.load(SID, {"Accounts": [HEADER, *rows]})
    db = fresh_database_url("console_ingest_ops")  # one database: the services share the `iam` schema
    ingest = ServiceHost(
        ingest_definition(
            fast_settings(broker.bootstrap_servers, db, sheets.url, SID, ingest_validation_workers=0)
        )
    )
    ingest_app = ingest.build_app()
    await ingest.start()
    try:
        async with serve(ingest_app) as ingest_url:
            console = ServiceHost(
                console_definition(
                    ConsoleSettings(
                        kafka_bootstrap_servers=broker.bootstrap_servers,
                        database_url=db,
                        runner_poll_timeout_ms=100,
                        console_ingest_url=ingest_url,
                    )
                )
            )
            app = console.build_app()
            await console.start()
            assert console.ctx is not None
            async with console.ctx.engine.begin() as conn:
                keys = {
                    r: await issue_key_async(conn, r)
                    for r in ("viewer", "collector", "supervisor", "service")
                }
            try:
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://console"
                ) as client:
                    yield {"client": client, "keys": keys, "ingest_url": ingest_url}
            finally:
                await console.stop()
    finally:
        await ingest.stop()


async def test_runs_rejects_with_fixes_run_now_and_csv(stack: dict[str, Any]) -> None:
    client, keys = stack["client"], stack["keys"]
    supervisor = bearer(keys["supervisor"])

    async def first_run_done() -> bool:
        async with httpx.AsyncClient(base_url=stack["ingest_url"], headers=supervisor) as ingest:
            items = (await ingest.get("/ingest/runs")).json()["items"]
        return bool(items) and items[0]["status"] == "succeeded"

    await eventually(first_run_done, what="ingest's start-up run")

    # the API carries the fix next to each reason
    async with httpx.AsyncClient(base_url=stack["ingest_url"], headers=supervisor) as ingest:
        rejects = (await ingest.get("/ingest/rejects")).json()["items"]
    assert {r["reason"] for r in rejects} >= {"not a number", "Customer Name is required"}
    assert all(r["fix"] for r in rejects), rejects

    r = await client.get("/ops/ingest", headers=supervisor)
    assert r.status_code == 200, r.text
    assert "Recent runs" in r.text and "succeeded" in r.text and "Rows to fix: 4" in r.text
    assert "Write Balance as a plain number" in r.text  # the fix, with the column's header
    assert "Type the customer&#39;s name in the Customer Name cell." in r.text
    assert "Give this row its own Account ID" in r.text
    assert "Run the sheet now" in r.text and 'href="/ops/ingest/rejects.csv"' in r.text
    assert 'action="/ops/ingest/run?csrf_token=' in r.text

    before = r.text.count("<td>api</td>")
    run = await client.post("/ops/ingest/run", headers=supervisor)
    assert run.status_code == 303 and "sheet+read" in run.headers["location"], run.headers
    r = await client.get("/ops/ingest", headers=supervisor)
    assert r.text.count("<td>api</td>") == before + 1

    csv_answer = await client.get("/ops/ingest/rejects.csv", headers=supervisor)
    assert csv_answer.status_code == 200 and csv_answer.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(csv_answer.text)))
    assert len(table) == 4 and all(row["fix"] for row in table)

    # the service role may trigger runs, but not read rejects (raw sheet values)
    service = bearer(keys["service"])
    assert (await client.get("/ops/ingest", headers=service)).status_code == 403
    for role in ("viewer", "collector"):
        h = bearer(keys[role])
        assert (await client.get("/ops/ingest", headers=h)).status_code == 403
        assert (await client.get("/ops/ingest/rejects.csv", headers=h)).status_code == 403
        assert (await client.post("/ops/ingest/run", headers=h)).status_code == 403


# -- every reject reason has a fix -----------------------------------------------------------------------


def _sample(node: ast.expr) -> str | None:
    """A literal reason, or an f-string's text with each placeholder as `X` (None for anything else)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values)
    return None


def reject_reasons() -> set[str]:
    """Every reason string the validation package and the payment webhooks can put into a reject:
    `CellError("…")`, `fail(col, "…")`, `Rejection(reason="…")` and the payments' `_reject(…, "…")`."""
    root = Path(arrears_ingest.__file__).parent
    files = [*sorted((root / "validation").glob("*.py")), root / "payments" / "service.py"]
    out: set[str] = set()
    for path in files:
        if path.name == "fixes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            args: list[ast.expr] = []
            if name == "CellError" and node.args:
                args = [node.args[0]]
            elif name == "fail" and len(node.args) == 2:
                args = [node.args[1]]
            elif name == "_reject" and len(node.args) == 5:
                args = [node.args[4]]
            elif name == "Rejection":
                args = [k.value for k in node.keywords if k.arg == "reason"]
            for a in args:
                sample = _sample(a)
                if sample is not None:
                    out.add(sample)
    return out


def test_every_reject_reason_has_a_fix() -> None:
    reasons = reject_reasons()
    assert len(reasons) > 25, sorted(reasons)  # the scan found the reasons (not a vacuous pass)
    missing = sorted(r for r in reasons if not fix_for(r, "Balance"))
    assert not missing, f"add a fix for these reasons to arrears_ingest/validation/fixes.py: {missing}"
    assert fix_for("a reason nobody wrote yet") is None
    assert (
        fix_for("not a number", "Balance")
        == "Write Balance as a plain number, e.g. 1234.56 — no words, no formulas."
    )
