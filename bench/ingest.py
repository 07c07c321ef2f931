"""Ingest benchmark: a 100,000-row PME master sheet served by the Sheets emulator, read by the ingest
service (its own OS process, as deployed) through gspread -> validate -> diff -> outbox -> Kafka.

On the embedded broker (Tansu) and embedded PostgreSQL (durable: fsync on), with the sheet emulator as its
own process:
  first     = `POST /ingest/sheet` on an empty snapshot until every event of the run is published to Kafka
              (outbox drained), including the write-back of every row's outcome to the sheet;
  unchanged = the same sheet again: wall time of the run; `unchanged_events` = outbox rows it wrote;
  peak_rss  = the ingest process's peak resident set size (VmHWM) over both runs, plus the peaks of its
              child processes (validation workers).
Targets: first <= 15 s, unchanged <= 5 s with 0 events, peak RSS <= 300 MB.
The last line printed is exactly:
  BENCH ingest rows=<n> first_s=<s> unchanged_s=<s> unchanged_events=<n> peak_rss_mb=<n>

Usage: python bench/ingest.py [--rows 100000] [--no-writeback]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import asyncpg
import httpx
import psutil
from arrears_cli.demo_sheet import generate_pme_rows, load_into_emulator
from arrears_cli.stack.broker import EmbeddedBroker
from arrears_cli.stack.ports import free_port
from arrears_cli.stack.postgres import EmbeddedPostgres
from arrears_shared.auth import keys
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from common import ensure_stack_keys  # noqa: E402

SPREADSHEET_ID = "bench-pme"


@contextlib.contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited:\n{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} not up after {limit_s}s:\n{log.read_text(errors='replace')[-3000:]}")


def vm_hwm_mb(pid: int) -> float:
    """VmHWM: the kernel's record of the process's peak resident set size."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def peak_rss_mb(pid: int) -> tuple[float, dict[int, float]]:
    """The service process's peak RSS plus those of its child processes (validation workers,
    multiprocessing's resource tracker): a sum of peaks, so never less than the real simultaneous peak."""
    children: dict[int, float] = {}
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error, OSError):
            children[child.pid] = vm_hwm_mb(child.pid)
    return vm_hwm_mb(pid) + sum(children.values()), children


def outbox(db: str) -> tuple[int, int]:
    """(max outbox id, unpublished rows)."""

    async def query() -> tuple[int, int]:
        conn = await asyncpg.connect(db)
        try:
            row = await conn.fetchrow(
                "SELECT coalesce(max(id), 0), count(*) FILTER (WHERE published_at IS NULL) FROM ingest.outbox"
            )
        finally:
            await conn.close()
        assert row is not None
        return int(row[0]), int(row[1])

    return asyncio.run(query())


def wait_drained(db: str, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while outbox(db)[1]:
        if time.monotonic() > deadline:
            raise RuntimeError("outbox not drained")
        time.sleep(0.05)


def issue_service_key(db: str) -> str:
    """An API key with the `service` role (a scheduler's: it may run the sheet), in the platform's `iam`
    schema (migrated first); returns the plaintext."""
    upgrade(db, "iam")

    async def create() -> str:
        engine = make_engine(db)
        try:
            async with engine.begin() as conn:
                _, plaintext = await keys.create(
                    conn, name="bench-ingest", roles=("service",), created_by="bench"
                )
            return plaintext
        finally:
            await engine.dispose()

    return asyncio.run(create())


def run_sheet(base: str, key: str) -> dict[str, object]:
    r = httpx.post(f"{base}/ingest/sheet", headers={"Authorization": f"Bearer {key}"}, timeout=600)
    r.raise_for_status()
    run = r.json()
    if run["status"] != "succeeded":
        raise RuntimeError(f"run failed: {run}")
    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--no-writeback", action="store_true", help="skip writing outcomes back to the sheet")
    args = ap.parse_args()
    rows = generate_pme_rows(args.rows, today=date(2025, 3, 31))
    keep = os.environ.get("BENCH_KEEP_LOGS")
    with (
        contextlib.nullcontext(keep) if keep else tempfile.TemporaryDirectory(prefix="bench-ingest") as d,
        EmbeddedBroker() as broker,
        EmbeddedPostgres(Path(d) / "pg") as pg,
    ):
        db = pg.create_database("ingest_bench")
        key = issue_service_key(db)
        emu_port, http_port = free_port("127.0.0.1"), free_port("127.0.0.1")
        emu_url, base = f"http://127.0.0.1:{emu_port}", f"http://127.0.0.1:{http_port}"
        env = {
            **os.environ,
            "ARREARS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "ARREARS_DATABASE_URL": db,
            "ARREARS_HTTP_HOST": "127.0.0.1",
            "ARREARS_HTTP_PORT": str(http_port),
            "ARREARS_SHEETS_API_ENDPOINT": emu_url,
            "ARREARS_SHEETS_SPREADSHEET_ID": SPREADSHEET_ID,
            "ARREARS_INGEST_POLL_INTERVAL_S": "86400",
            "ARREARS_INGEST_WRITEBACK": "false" if args.no_writeback else "true",
            "ARREARS_SHEETS_MAX_RETRIES": "0",  # the start-up poll finds no sheet: fail fast
            "ARREARS_LOG_FORMAT": "json",
        }
        env.pop("ARREARS_SHEETS_CREDENTIALS_FILE", None)
        emu_log, svc_log = Path(d) / "emulator.log", Path(d) / "ingest.log"
        emu_cmd = [sys.executable, "-m", "arrears_emulators", "sheets", "--port", str(emu_port)]
        with process(emu_cmd, env, emu_log) as emu:
            wait_http(f"{emu_url}/_emulator/health", emu, emu_log)
            # quotas lifted: the benchmark measures ingest, not Google's per-minute quota
            httpx.put(f"{emu_url}/_emulator/limits", json={"lifted": True}).raise_for_status()
            with process([sys.executable, "-m", "arrears_ingest"], env, svc_log) as svc:
                wait_http(f"{base}/readyz", svc, svc_log)
                # the start-up poll ran against a missing spreadsheet (failed run); now load the sheet
                load_into_emulator(emu_url, SPREADSHEET_ID, rows, timeout_s=300)
                t0 = time.monotonic()
                first = run_sheet(base, key)
                wait_drained(db)
                first_s = time.monotonic() - t0
                print(
                    f"first run: {first['rows']} rows, {first['created']} created, {first['rejected']} "
                    f"rejected, {first_s:.2f}s incl. publish + write-back",
                    flush=True,
                )
                mark, _ = outbox(db)
                t0 = time.monotonic()
                second = run_sheet(base, key)
                unchanged_s = time.monotonic() - t0
                after, _ = outbox(db)
                unchanged_events = after - mark
                rss, children = peak_rss_mb(svc.pid)
                print(
                    f"unchanged run: {second['unchanged']} unchanged, {unchanged_events} events, "
                    f"{unchanged_s:.2f}s; peak RSS {rss:.0f} MB (service {vm_hwm_mb(svc.pid):.0f} MB, "
                    f"child processes {', '.join(f'{v:.0f}' for v in children.values()) or 'none'} MB)",
                    flush=True,
                )
                writes = httpx.get(f"{emu_url}/_emulator/stats").json()["by_method"]
                print(f"emulator calls: {writes}", flush=True)
    print(
        f"BENCH ingest rows={args.rows} first_s={first_s:.2f} unchanged_s={unchanged_s:.2f} "
        f"unchanged_events={unchanged_events} peak_rss_mb={rss:.0f}",
        flush=True,
    )


if __name__ == "__main__":
    ensure_stack_keys()
    main()
