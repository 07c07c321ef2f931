"""kill -9 of the segmenter in the middle of a tick loses and duplicates nothing: a child killed inside a
tick transaction (deterministic), then the real service process killed while its timer loop is busy, then
restarted; plus its HTTP API while it runs."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from arrears_cli.stack.broker import EmbeddedBroker
from arrears_segmenter.deps import Deps
from arrears_segmenter.schedule.models import load_policy
from arrears_shared.clock import Clock
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from auth_support import bearer, issue_key
from sqlalchemy import text

from .support import account, handle

PROCS = Path(__file__).with_name("procs.py")
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def daytime_zone(now: datetime) -> str:
    """A fixed-offset zone where it is early afternoon now, so the gate allows every notice."""
    offset = max(-12, min(14, 13 - now.hour))
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-5 is UTC+5


async def seed(url: str, prefix: str, n: int) -> None:
    now = datetime.now(UTC)
    d = Deps(policy=load_policy(), clock=Clock())
    engine = make_engine(url)
    try:
        zone = daytime_zone(now)
        for i in range(0, n, 500):
            await handle(
                engine,
                d,
                *[
                    account(
                        f"{prefix}{j:05d}",
                        timezone=zone,
                        country=None,
                        region=None,
                        due_date=(now - timedelta(days=5)).date(),
                    )
                    for j in range(i, min(n, i + 500))
                ],
            )
    finally:
        await engine.dispose()


async def ledger(url: str, prefix: str) -> tuple[list[str], list[str]]:
    """(notice ids in the notice ledger, ce_ids of notice-due rows in the outbox) of this test's accounts."""
    engine = make_engine(url)
    try:
        async with engine.connect() as c:
            ids = [
                r[0]
                for r in await c.execute(
                    text("SELECT notice_id FROM segmenter.notices WHERE account_id LIKE :p"),
                    {"p": f"{prefix}%"},
                )
            ]
            out = [
                r[0]
                for r in await c.execute(
                    text(
                        "SELECT h->>1 FROM segmenter.outbox o, jsonb_array_elements(o.headers::jsonb) h "
                        "WHERE o.topic = 'notice-due' AND h->>0 = 'ce_id' AND h->>1 LIKE :p"
                    ),
                    {"p": f"{prefix}%"},
                )
            ]
        return ids, out
    finally:
        await engine.dispose()


def check_exactly_once(ids: list[str], out: list[str], n: int, prefix: str) -> None:
    assert len(ids) == len(set(ids)) == 2 * n, (
        f"ledger has {len(ids)} ({len(set(ids))} distinct), want {2 * n}"
    )
    assert sorted(out) == sorted(ids), "outbox and notice ledger disagree"
    per_account = Counter(i.split(":")[0] for i in ids)
    assert set(per_account.values()) == {2} and len(per_account) == n


@pytest.fixture
def url(fresh_database_url) -> str:  # type: ignore[no-untyped-def]
    u = fresh_database_url("segcrash")
    upgrade(u, "segmenter")
    return u


def test_sigkill_inside_a_tick_transaction_loses_and_duplicates_nothing(url: str) -> None:
    n = 300
    asyncio.run(seed(url, "K", n))
    crash = subprocess.run(
        [sys.executable, str(PROCS), "crash-mid-tick", url, "40", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crash.returncode == -signal.SIGKILL, crash.stdout + crash.stderr
    assert "CRASHING mid-tick" in crash.stdout
    ids, out = asyncio.run(ledger(url, "K"))
    assert len(ids) == len(out) == 2 * 2 * 40  # two committed ticks; the third died uncommitted
    again = subprocess.run(
        [sys.executable, str(PROCS), "crash-mid-tick", url, "40", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "FINISHED" in again.stdout, again.stdout + again.stderr
    check_exactly_once(*asyncio.run(ledger(url, "K")), n, "K")


class Service:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self._f = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "arrears_segmenter"], env=env, stdout=self._f, stderr=subprocess.STDOUT
        )

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._f.close()


def wait_for(pred, limit_s: float, what: str, svc: Service):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit_s
    while True:
        v = pred()
        if v:
            return v
        if svc.proc.poll() is not None:
            pytest.fail(
                f"segmenter exited ({svc.proc.returncode}) waiting for {what}:\n{svc.log.read_text()[-3000:]}"
            )
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{svc.log.read_text()[-3000:]}")
        time.sleep(0.1)


@pytest.fixture
def own_broker(stack_supervisor) -> Iterator[EmbeddedBroker]:  # type: ignore[no-untyped-def]
    """A broker of its own: the 3,000 notice-due this test publishes must not reach other tests' consumers
    (the dispatchers' service tests read `notice-due` on the session broker)."""
    b = EmbeddedBroker(supervisor=stack_supervisor, name="segmenter-crash-broker").start()
    yield b
    b.stop()


def test_service_killed_mid_tick_and_restarted_sends_each_notice_once(url: str, own_broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    n = 1500
    asyncio.run(seed(url, "S", n))
    supervisor = issue_key(url, "supervisor")
    port = free_port()
    env = {
        **os.environ,
        "ARREARS_DATABASE_URL": url,
        "ARREARS_KAFKA_BOOTSTRAP_SERVERS": own_broker.bootstrap_servers,
        "ARREARS_HTTP_PORT": str(port),
        "ARREARS_HTTP_HOST": "127.0.0.1",
        "ARREARS_SEGMENTER_TICK_S": "0.05",
        "ARREARS_SEGMENTER_TIMER_BATCH": "20",
        "ARREARS_LOG_LEVEL": "WARNING",
    }
    svc = Service(env, tmp_path / "segmenter.log")
    try:

        def some() -> int:
            ids, _ = asyncio.run(ledger(url, "S"))
            return len(ids) if len(ids) >= 200 else 0

        at_kill = wait_for(some, 180, "the timer loop to get going", svc)
        svc.kill9()
        ids, out = asyncio.run(ledger(url, "S"))
        assert 0 < len(ids) < 2 * n, "the kill must land while the loop is busy"
        assert sorted(ids) == sorted(out) and len(ids) >= at_kill
        svc = Service(env, tmp_path / "segmenter.log")

        def done() -> bool:
            ids, _ = asyncio.run(ledger(url, "S"))
            return len(ids) >= 2 * n

        wait_for(done, 180, "every notice after the restart", svc)
        time.sleep(0.5)  # a late duplicate would show up here
        check_exactly_once(*asyncio.run(ledger(url, "S")), n, "S")
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10, headers=bearer(supervisor)) as http:
            wait_for(lambda: _ok(http, "/healthz"), 120, "the HTTP API", svc)
            assert httpx.get(f"{base}/accounts/S00007/decisions", timeout=10).status_code == 401
            dec = http.get("/accounts/S00007/decisions").json()
            assert [x["outcome"] for x in dec].count("emitted") == 2
            bad = http.post(
                "/policies",
                content="id: default\nversion: 99\nsteps: []\n",
                headers={"content-type": "application/yaml"},
            )
            assert bad.status_code == 422 and bad.json()["detail"]["errors"][0]["loc"] == "steps"
            r = http.post("/campaigns", json={"campaign_id": "c1", "name": "C", "owner": "o"})
            assert r.status_code == 201 and r.json()["status"] == "planned"
            r = http.post("/campaigns/c1/status", json={"status": "completed"})
            assert r.status_code == 409
            assert http.get("/approvals").status_code == 200
            assert http.get("/policies/active").json()["version"] == 1
    finally:
        svc.stop()


def _ok(http: httpx.Client, path: str) -> bool:
    try:
        return http.get(path).status_code == 200
    except httpx.HTTPError:
        return False
