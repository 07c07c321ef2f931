"""Debtor portal under load: verified visits and link opens at a fixed arrival rate.

Starts the embedded broker and PostgreSQL, publishes `--accounts` accounts on `account-changed`, runs the
portal as its own process (`python -m arrears_portal`, uvicorn, as deployed) and waits until it has learnt
them. Opens `--visits` verified visits (a link, the right four digits, the session cookie), then sends
requests open-loop at `--rate` per second for `--seconds`: half `GET /portal/account` of a random visit (the
account page: session lookup with sliding expiry, the account's row with its sealed fields opened, render),
half `GET /p/<token>` of a random link (token check, the open counted in `portal.link_opens` — a click event
on a link's first open). Latency is measured from each request's scheduled time, so a stall that delays
later requests counts against them (no coordinated omission). The load generator shares the machine.

Last line: `BENCH portal rps=… p50_ms=… p99_ms=… errors=…` (target: 200 requests/s with p99 < 200 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import psutil
from arrears_cli.stack.broker import EmbeddedBroker
from arrears_cli.stack.ports import free_port
from arrears_cli.stack.postgres import EmbeddedPostgres
from arrears_cli.stack.topics import ensure_topics
from arrears_portal.verification.sessions import COOKIE
from arrears_shared import topics
from arrears_shared.cloudevents import encode
from arrears_shared.events import AccountChanged, Tier
from arrears_shared.links import LinkClaims, LinkSigner
from common import ensure_stack_keys, produce_all  # noqa: E402
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

# BENCH_PORTAL_PROFILE=<file>: run the portal under cProfile (written when it stops), to see where time goes
PROFILE = (
    ["-m", "cProfile", "-o", os.environ["BENCH_PORTAL_PROFILE"]]
    if os.environ.get("BENCH_PORTAL_PROFILE")
    else []
)
LINK_KEY = "bench-portal-link-key-0123456789abcdefghijkl"


def account(i: int) -> AccountChanged:
    return AccountChanged(
        account_id=f"BP-{i:06d}",
        change="created",
        source="sheet",
        customer_name=f"Customer {i}",
        phone=f"+1415555{i % 10_000:04d}",
        email=f"c{i}@example.com",
        balance_minor=10_000 + i,
        currency="USD",
        due_date=date.today() - timedelta(days=20),
        timezone="America/New_York",
        sms_consent=True,
        email_consent=True,
        content_hash=uuid.uuid4().hex,
        as_of=datetime.now(UTC),
    )


def link(signer: LinkSigner, i: int, step: int) -> str:
    now = datetime.now(UTC).replace(microsecond=0)
    return signer.mint(
        LinkClaims(
            notice_id=f"BP-{i:06d}:default:v1:s{step}:c0:sms",
            account_id=f"BP-{i:06d}",
            channel="sms",
            tier=Tier.REMINDER,
            issued_at=now,
            expires_at=now + timedelta(days=30),
        )
    )


async def wait_learnt(url: str, n: int, limit_s: float = 180.0) -> None:
    engine = create_async_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    deadline = time.monotonic() + limit_s
    try:
        while time.monotonic() < deadline:
            try:
                async with engine.connect() as c:
                    got = (await c.execute(text("SELECT count(*) FROM portal.accounts"))).scalar_one()
                if got >= n:
                    return
            except Exception:  # the schema is created by the portal's start-up migration
                pass
            await asyncio.sleep(0.5)
        raise SystemExit(f"the portal learnt fewer than {n} accounts in {limit_s:.0f} s")
    finally:
        await engine.dispose()


async def wait_ready(base: str, proc: subprocess.Popen[bytes], limit_s: float = 90.0) -> None:
    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient() as c:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit("the portal exited during start-up")
            try:
                if (await c.get(f"{base}/readyz", timeout=1)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("the portal did not become ready")


async def open_visits(base: str, signer: LinkSigner, n: int) -> list[str]:
    cookies: list[str] = []
    async with httpx.AsyncClient(base_url=base) as c:
        for i in range(n):
            r = await c.post(f"/p/{link(signer, i, 1)}", data={"digits": f"{i % 10_000:04d}", "lang": "en"})
            if r.status_code != 303:
                raise SystemExit(f"verification failed: {r.status_code}")
            cookies.append(r.cookies[COOKIE])
    return cookies


async def load(
    base: str, cookie_name: str, cookies: list[str], links: list[str], rate: float, seconds: float
) -> tuple[list[float], int, float]:
    rnd = random.Random(11)
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as c:

        async def one(at: float, path: str, cookie: str | None) -> None:
            nonlocal errors
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            try:
                r = await c.get(path, headers={"cookie": f"{cookie_name}={cookie}"} if cookie else None)
                if r.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            latencies.append(time.perf_counter() - at)
            if os.environ.get("BENCH_TRACE"):
                print(f"TRACE {at - start:.3f} {time.perf_counter() - at:.3f} {path[:9]}")

        start = time.perf_counter() + 0.5
        n = int(rate * seconds)
        tasks = []
        for k in range(n):
            at = start + k / rate
            if k % 2 == 0:
                tasks.append(one(at, "/portal/account", rnd.choice(cookies)))
            else:
                tasks.append(one(at, f"/p/{rnd.choice(links)}", None))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return latencies, errors, elapsed


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=5_000)
    ap.add_argument("--visits", type=int, default=200)
    ap.add_argument("--links", type=int, default=2_000)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    ensure_stack_keys()
    load_before = os.getloadavg()[0]  # the machine is shared: other work competes for its 2 cores
    signer = LinkSigner(LINK_KEY)
    with (
        tempfile.TemporaryDirectory(prefix="bench-portal") as d,
        EmbeddedBroker() as broker,
        EmbeddedPostgres(Path(d) / "pg") as pg,
    ):
        url = pg.create_database("bench")
        await ensure_topics(broker.bootstrap_servers, 3)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "ARREARS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "ARREARS_DATABASE_URL": url,
            "ARREARS_HTTP_PORT": str(port),
            "ARREARS_LINK_KEY": LINK_KEY,
            "ARREARS_PORTAL_COOKIE_SECURE": "false",
            "ARREARS_PORTAL_RATE_PER_MINUTE": "1000000",  # one load generator address
            "ARREARS_LOG_LEVEL": "WARNING",
        }
        log = (Path(d) / "portal.log").open("w")
        proc = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, *PROFILE, "-m", "arrears_portal"],
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            await wait_ready(base, proc)
            recs = [encode(account(i), source="ingest", id=f"bench:{i}") for i in range(args.accounts)]
            await produce_all(broker.bootstrap_servers, topics.ACCOUNT_CHANGED, recs)
            await wait_learnt(url, args.accounts)
            print(f"portal learnt {args.accounts} accounts", flush=True)
            cookies = await open_visits(base, signer, args.visits)
            links = [link(signer, i % args.accounts, 2 + i // args.accounts) for i in range(args.links)]
            await load(base, COOKIE, cookies, links, args.rate / 4, 3)  # warm-up
            cpu = psutil.Process(proc.pid)
            cpu_before = sum(cpu.cpu_times()[:2])
            latencies, errors, elapsed = await load(base, COOKIE, cookies, links, args.rate, args.seconds)
            cpu_ms = (sum(cpu.cpu_times()[:2]) - cpu_before) * 1000 / max(1, len(latencies))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    rps = len(latencies) / elapsed
    print(
        f"requests={len(latencies)} visits={args.visits} links={args.links} accounts={args.accounts} "
        f"p95_ms={pct(latencies, 0.95):.1f} max_ms={max(latencies) * 1000:.1f} "
        f"portal_cpu_ms_per_request={cpu_ms:.2f} load_before={load_before:.1f}"
    )
    print(
        f"BENCH portal rps={rps:.0f} p50_ms={pct(latencies, 0.50):.1f} p99_ms={pct(latencies, 0.99):.1f} "
        f"errors={errors}"
    )


if __name__ == "__main__":
    asyncio.run(main())
