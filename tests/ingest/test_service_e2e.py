"""The ingest service as its own OS process (`python -m arrears_ingest`) against the real broker, real
PostgreSQL and the Sheets emulator: rows in the sheet end up as `account-changed` / `ingest-rejected`
records in Kafka, every row accepted or rejected with a reason; changes, removals, an outage and the
reject export behave as documented."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer
from arrears_cli.__main__ import app as cli_app
from arrears_emulators.sheets import create_app
from arrears_shared import topics
from arrears_shared.cloudevents import Envelope, decode, header_map
from arrears_shared.db.engine import make_engine
from arrears_shared.events import AccountChanged, IngestRejected
from arrears_shared.vault.records import needs_opening
from auth_support import bearer, issue_key
from typer.testing import CliRunner
from vault_support import data_keys

from .sheetdata import HEADER, account_row

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def sheets_emulator() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="sheets-emulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "sheets emulator did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def load_sheet(emulator: str, spreadsheet_id: str, values: list[list[str]]) -> None:
    r = httpx.post(
        f"{emulator}/_emulator/spreadsheets",
        json={"spreadsheet_id": spreadsheet_id, "title": "PME master", "sheets": {"Accounts": values}},
    )
    assert r.status_code == 201, r.text


class ServiceProcess:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "arrears_ingest"], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


async def wait_for(pred: Callable[[], Any], limit_s: float, what: str, proc: ServiceProcess) -> Any:
    deadline = time.monotonic() + limit_s
    while True:
        value = await pred()
        if value:
            return value
        if proc.proc.poll() is not None:
            pytest.fail(f"ingest exited with {proc.proc.returncode} while waiting for {what}:\n{proc.logs()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{proc.logs()}")
        await asyncio.sleep(0.2)


class EventTap:
    """Reads account-changed and ingest-rejected from the beginning (no group), keeping this test's events,
    their personal fields opened with the data keys of the service's database (as a consumer reads them)."""

    def __init__(self, bootstrap: str, prefix: str, database_url: str) -> None:
        self.consumer = AIOKafkaConsumer(
            topics.ACCOUNT_CHANGED,
            topics.INGEST_REJECTED,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        self.prefix = prefix
        self.engine = make_engine(database_url, pool_size=1)  # the vault of the service's database
        self.events: list[Envelope] = []

    async def poll(self) -> list[Envelope]:
        batches = await self.consumer.getmany(timeout_ms=200)
        records = []
        for batch in batches.values():
            for rec in batch:
                h = header_map(rec.headers)
                if h.get("ce_source") != "ingest":
                    continue
                sealed_for = needs_opening(rec.headers, rec.value)
                if sealed_for is not None and not sealed_for.startswith(self.prefix):
                    continue  # another test's account: sealed with the keys of that test's database
                records.append(rec)
        async with self.engine.connect() as c:
            keys = await data_keys(c, ((rec.headers, rec.value) for rec in records))
        for rec in records:
            env = decode(rec.headers, rec.value, keys)
            data = env.data
            mine = data.account_id.startswith(self.prefix) or (
                isinstance(data, IngestRejected) and data.account_id.startswith("row:")
            )
            if mine:
                assert rec.key == data.account_id.encode()
                self.events.append(env)
        return self.events

    async def close(self) -> None:
        await self.consumer.stop()
        await self.engine.dispose()

    def changed(self, change: str | None = None) -> list[AccountChanged]:
        return [
            e.data
            for e in self.events
            if isinstance(e.data, AccountChanged) and (change is None or e.data.change == change)
        ]

    def rejected(self, batch_id: str) -> list[IngestRejected]:
        return [
            e.data for e in self.events if isinstance(e.data, IngestRejected) and e.data.batch_id == batch_id
        ]


async def test_ingest_service_end_to_end(
    broker: Any, fresh_database_url: Callable[..., str], sheets_emulator: str, tmp_path: Path
) -> None:
    prefix = f"E2E{uuid.uuid4().hex[:6]}-"
    spreadsheet_id = f"pme{uuid.uuid4().hex[:8]}"

    def row(i: int, **kw: str) -> list[str]:
        return account_row(i, **{"Account ID": f"{prefix}{i}", **kw})

    values = [HEADER, *(row(i) for i in range(1, 21))]
    values[3] = row(3, Phone="12", Email="nope")  # accepted, contact details dropped
    values[5] = row(5, Balance='=HYPERLINK("http://evil")')  # row 6: rejected, formula-looking value
    values[7] = row(7, **{"Due Date": "", "Balance": "$7,500.00"})  # row 8: rejected, highest balance
    values.append(["", "No Id Person", "", "", "10", "", "2025-01-01"])  # rejected, no id (row 22)
    values.append(row(1))  # duplicate of row 2 (row 23)
    load_sheet(sheets_emulator, spreadsheet_id, values)

    http_port = free_port()
    database_url = fresh_database_url("ingest_e2e")
    # migrates `iam` first (the service finds it at head); sync, so off the event loop
    key = await asyncio.to_thread(issue_key, database_url, "supervisor")
    env = {
        **os.environ,
        "ARREARS_SERVICE_NAME": "ingest",
        "ARREARS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "ARREARS_DATABASE_URL": database_url,
        "ARREARS_HTTP_HOST": "127.0.0.1",
        "ARREARS_HTTP_PORT": str(http_port),
        "ARREARS_SHEETS_API_ENDPOINT": sheets_emulator,
        "ARREARS_SHEETS_SPREADSHEET_ID": spreadsheet_id,
        "ARREARS_SHEETS_WORKSHEET": "Accounts",
        "ARREARS_INGEST_POLL_INTERVAL_S": "3600",
        "ARREARS_LOG_FORMAT": "text",
        "ARREARS_OUTBOX_POLL_S": "0.05",
    }
    env.pop("ARREARS_SHEETS_CREDENTIALS_FILE", None)
    proc = ServiceProcess(env, tmp_path / "ingest.log")
    tap = EventTap(broker.bootstrap_servers, prefix, database_url)
    await tap.consumer.start()
    base = f"http://127.0.0.1:{http_port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30, headers=bearer(key)) as http:

            async def runs() -> list[dict[str, Any]]:
                with contextlib.suppress(httpx.HTTPError):
                    r = await http.get("/ingest/runs")
                    if r.status_code == 200:
                        return [x for x in r.json()["items"] if x["status"] != "running"]
                return []

            # -- first poll at start-up --------------------------------------------------------------------
            (first,) = await wait_for(runs, 60, "the start-up poll", proc)
            assert first["status"] == "succeeded", first
            assert (first["rows"], first["accepted"], first["rejected"], first["created"]) == (22, 18, 4, 18)

            async def all_first_events() -> bool:
                await tap.poll()
                return len(tap.changed("created")) >= 18 and len(tap.rejected(first["id"])) >= 4

            await wait_for(all_first_events, 30, "first run's events in Kafka", proc)
            created = {e.account_id: e for e in tap.changed("created")}
            rejected = tap.rejected(first["id"])
            assert len(created) == 18 and len(tap.changed()) == 18
            # every non-blank row ends accepted or rejected with a reason
            accepted_rows = {e.source_row for e in created.values()}
            rejected_rows = {r.row_number for r in rejected}
            assert accepted_rows | rejected_rows == set(range(2, 24)) and not accepted_rows & rejected_rows
            assert all(r.reason for r in rejected)
            assert {r.row_number: r.column for r in rejected} == {
                6: "Balance",
                8: "Due Date",
                22: "Account ID",
                23: "Account ID",
            }
            no_contact = created[f"{prefix}3"]
            assert no_contact.phone is None and no_contact.email is None and not no_contact.sms_consent
            assert created[f"{prefix}2"].phone == "+13125550002"
            assert created[f"{prefix}2"].timezone == "America/Chicago"

            # -- reject exports ----------------------------------------------------------------------------
            rj = (await http.get("/ingest/rejects")).json()
            assert rj["total"] == 4 and rj["items"][0]["row_number"] == 8  # highest balance first
            csv_text = (await http.get("/ingest/rejects.csv")).text
            cells = list(csv.reader(io.StringIO(csv_text)))
            assert cells[0][:3] == ["row_number", "account_id", "column"]
            formula = next(c for c in cells[1:] if c[0] == "6")
            assert formula[3].startswith("'=HYPERLINK")

            # -- unchanged sheet: nothing; one change + one removal: exactly two events ---------------------
            again = (await http.post("/ingest/sheet")).json()
            assert (again["status"], again["created"], again["updated"], again["removed"]) == (
                "succeeded",
                0,
                0,
                0,
            )
            values[10] = row(10, Balance="$1.00")
            del values[12]  # account 12
            load_sheet(sheets_emulator, spreadsheet_id, values)
            third = (await http.post("/ingest/sheet")).json()
            assert (third["updated"], third["removed"], third["created"]) == (1, 1, 0), third

            async def third_events() -> bool:
                await tap.poll()
                return len(tap.changed()) >= 20

            await wait_for(third_events, 30, "update/remove events", proc)
            assert [e.account_id for e in tap.changed("updated")] == [f"{prefix}10"]
            assert tap.changed("updated")[0].balance_minor == 100
            assert [e.account_id for e in tap.changed("removed")] == [f"{prefix}12"]

            # -- outage: run fails, snapshot kept, readiness says degraded, metric is 1 ----------------------
            r = await http.post(
                f"{sheets_emulator}/_emulator/faults", json={"kind": "outage", "enabled": True}
            )
            assert r.status_code == 200
            failed = (await http.post("/ingest/sheet", timeout=120)).json()
            assert failed["status"] == "failed" and failed["error"], failed
            ready = await http.get("/readyz")
            check = ready.json()["checks"]["sheet_source"]
            assert check["ok"] is True and check["detail"].startswith("degraded since")
            metrics_text = (await http.get("/metrics")).text
            assert 'arrears_ingest_degraded{source="sheet"} 1.0' in metrics_text
            await http.delete(f"{sheets_emulator}/_emulator/faults")
            recovered = (await http.post("/ingest/sheet")).json()
            assert (recovered["status"], recovered["created"], recovered["removed"]) == ("succeeded", 0, 0)
            check = (await http.get("/readyz")).json()["checks"]["sheet_source"]
            assert check["detail"].startswith("ok")
            metrics_text = (await http.get("/metrics")).text
            assert 'arrears_ingest_degraded{source="sheet"} 0.0' in metrics_text
            assert 'arrears_ingest_last_success_timestamp_seconds{source="sheet"}' in metrics_text
            await tap.poll()
            assert len(tap.changed()) == 20

            # -- the CLI drives the same API: `arrears ingest sheet|file|rejects|runs` -----------------------
            cli_env = {"ARREARS_INGEST_URL": base, "ARREARS_API_KEY": key}

            def cli(*args: str) -> Any:
                return CliRunner().invoke(cli_app, ["ingest", *args], env=cli_env)

            no_key = await asyncio.to_thread(
                lambda: CliRunner().invoke(
                    cli_app, ["ingest", "runs"], env={"ARREARS_INGEST_URL": base, "ARREARS_API_KEY": None}
                )
            )
            assert no_key.exit_code == 1 and "ARREARS_API_KEY" in no_key.output, no_key.output
            out = await asyncio.to_thread(cli, "sheet")
            assert out.exit_code == 0 and ": succeeded" in out.output and "created=0" in out.output, (
                out.output
            )
            upload = tmp_path / "export.csv"
            upload.write_text("\n".join(",".join(f'"{c}"' for c in r) for r in [HEADER, row(77)]) + "\n")
            out = await asyncio.to_thread(cli, "file", "--progress", str(upload))
            assert out.exit_code == 0 and "(upload, api)" in out.stdout and "created=1" in out.stdout, (
                out.output
            )
            assert "export.csv sent, checking rows" in out.stderr and "100%" in out.stderr, out.stderr
            out = await asyncio.to_thread(cli, "rejects", "--csv", "-")
            assert out.exit_code == 0 and out.output.splitlines()[0].startswith("row_number,account_id")
            assert len(out.output.splitlines()) == 1 + 4
            out = await asyncio.to_thread(cli, "rejects", "--source", "sheet")
            assert out.exit_code == 0 and out.output.splitlines()[0].split()[:3] == ["sheet", "row", "8"]
            out = await asyncio.to_thread(cli, "runs")
            assert out.exit_code == 0 and "upload" in out.output.splitlines()[0]
            bad = tmp_path / "bad.csv"
            bad.write_text("Name,Phone\nA,1\n")
            out = await asyncio.to_thread(cli, "file", str(bad))
            assert out.exit_code == 1 and "missing required column" in out.output

            async def uploaded() -> bool:
                await tap.poll()
                return any(e.source == "upload" for e in tap.changed("created"))

            await wait_for(uploaded, 30, "the uploaded account's event", proc)
            assert [e.account_id for e in tap.changed("created") if e.source == "upload"] == [f"{prefix}77"]
    finally:
        await tap.close()
        code = proc.stop()
    assert code == 0, proc.logs()
