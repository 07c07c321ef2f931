"""Chaos run of the dispatchers: N notices through two replicas of each dispatcher (separate OS processes),
with injected provider faults (5xx, timeouts with late accepts, accept-then-drop, slow answers) and a random
dispatcher killed with SIGKILL every few seconds and restarted.

The stack: embedded Tansu broker, embedded PostgreSQL, QUO and Gmail emulators (rate limits equal to the
configured rates), dispatcher-sms x2, dispatcher-email x2 (`python -m arrears_dispatcher_*`).
Some accounts opted out before their notice, some notices fall in quiet hours: neither may reach a provider.

Verdict from the emulators' ledgers and the delivery tables:
  delivered  = notices in state sent (each must be in a ledger exactly once)
  failed     = notices reported failed or suppressed, with a reason
  lost       = notices with no outcome (and not deferred by a compliance rule), or "sent" but not in a ledger
  duplicates = ledger entries beyond the first per notice
  rate_violations = provider 429 answers (our shared limiter must keep every replica under the rate)
Last line exactly:
  CHAOS dispatch notices=<n> delivered=<n> failed=<n> lost=<n> duplicates=<n> rate_violations=<n>
Exit status 0 only when lost=0 duplicates=0 rate_violations=0 (and no compliance violation).

Usage: python bench/chaos_dispatch.py [--notices 20000] [--kill-every 4] [--fault-rate 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from arrears_cli.stack.broker import EmbeddedBroker
from arrears_cli.stack.postgres import EmbeddedPostgres
from arrears_cli.stack.processes import ManagedProcess, ProcessSpec
from arrears_cli.stack.topics import ensure_topics
from arrears_emulators.common import LimitsConfig
from arrears_emulators.gmail.app import GmailConfig
from arrears_emulators.quo.app import QuoConfig
from arrears_shared.cloudevents import encode
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.events import Tier
from pydantic import BaseModel
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import ensure_stack_keys, kill_and_restart  # noqa: E402

from tests.dispatch.helpers import daytime_zone, night_zone, notice, opt_out  # noqa: E402

FROM = "+15550000001"
SENDER = "collections@arrears.test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def faults(rate: float, ops: list[str]) -> dict[str, Any]:
    """`rate` of all sends hit a fault: 40% 5xx, 20% timeouts (half of them accepted late), 25% accepted
    then dropped, 15% slow."""
    return {
        "clear": True,
        "seed": 7,
        "error_5xx": {"probability": rate * 0.4, "status": 503, "operations": ops},
        "timeout": {"probability": rate * 0.2, "hang_s": 1.5, "process_after": True, "operations": ops},
        "accept_then_drop": {"probability": rate * 0.25, "operations": ops},
        "slow": {"probability": rate * 0.15, "delay_ms": 400, "operations": ops},
    }


class Emulator:
    """An emulator in its own process (python -m arrears_emulators <name> --config <json>), so that it does
    not share an interpreter lock with this script."""

    def __init__(self, name: str, config: BaseModel, folder: Path) -> None:
        cfg = folder / f"{name}.json"
        cfg.write_text(config.model_dump_json(by_alias=False))
        argv = [sys.executable, "-m", "arrears_emulators", name, "--port", "0", "--config", str(cfg)]
        self.process = ManagedProcess(ProcessSpec(name=name, argv=argv, log_file=folder / f"{name}.log"))
        self.url = ""

    def __enter__(self) -> Emulator:
        self.process.start()
        line = self.process.wait_for_line(r"EMULATOR \S+ ready (\S+)", timeout=60)
        self.url = line.rsplit(" ", 1)[-1].strip()
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.stop()


def dispatcher(name: str, svc: str, env: dict[str, str], logs: Path) -> ManagedProcess:
    module = "arrears_" + svc.replace("-", "_")
    spec = ProcessSpec(
        name=name,
        argv=[sys.executable, "-m", module],
        env={**env, "ARREARS_SERVICE_NAME": svc, "ARREARS_HTTP_PORT": str(free_port())},
        log_file=logs / f"{name}.log",
    )
    return ManagedProcess(spec).start()


async def control(url: str, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient(timeout=30) as h:
        (await h.post(url, json=body)).raise_for_status()


async def fetch(url: str) -> Any:
    async with httpx.AsyncClient(timeout=60) as h:
        r = await h.get(url)
        r.raise_for_status()
        return r.json()


async def publish(bootstrap: str, events: list[Any]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=10)
    await p.start()
    try:
        futs = []
        for ev in events:
            rec = encode(ev, source="chaos", id=str(uuid.uuid4()))
            futs.append(await p.send(rec.topic, rec.value, key=rec.key, headers=rec.headers))
        await asyncio.gather(*futs)
    finally:
        await p.stop()


async def outcome(url: str) -> dict[str, dict[str, Any]]:
    eng = make_engine(url, pool_size=2)
    out: dict[str, dict[str, Any]] = {}
    try:
        async with eng.connect() as c:
            for schema in ("dispatcher_sms", "dispatcher_email"):
                rows = await c.execute(
                    text(f"SELECT notice_id, state, last_error, to_address FROM {schema}.deliveries")
                )
                for r in rows:
                    out[r.notice_id] = dict(r._mapping)
    finally:
        await eng.dispose()
    return out


async def progress(url: str) -> tuple[int, int]:
    """(rows, rows settled: sent / failed / suppressed, or deferred by a compliance rule)."""
    eng = make_engine(url, pool_size=1)
    rows = settled = 0
    try:
        async with eng.connect() as c:
            for schema in ("dispatcher_sms", "dispatcher_email"):
                r = (
                    await c.execute(
                        text(
                            "SELECT count(*) AS n, count(*) FILTER (WHERE state IN ('sent', 'failed', 'suppressed')"
                            f" OR (state = 'queued' AND last_error LIKE 'deferred:%')) AS s FROM {schema}.deliveries"
                        )
                    )
                ).one()
                rows += r.n
                settled += r.s
    finally:
        await eng.dispose()
    return rows, settled


async def wait_opt_outs(url: str, n: int, timeout_s: float = 120.0) -> None:
    eng = make_engine(url, pool_size=1)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            async with eng.connect() as c:
                got = 0
                for schema in ("dispatcher_sms", "dispatcher_email"):
                    got += (await c.execute(text(f"SELECT count(*) FROM {schema}.opt_outs"))).scalar_one()
            if got >= n:
                return
            await asyncio.sleep(0.5)
        raise RuntimeError("opt-outs were not recorded in time")
    finally:
        await eng.dispose()


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--notices", type=int, default=20_000)
    ap.add_argument("--kill-every", type=float, default=4.0)
    ap.add_argument("--fault-rate", type=float, default=0.2)
    ap.add_argument("--sms-rate", type=float, default=150.0, help="configured QUO rate (emulator = same)")
    ap.add_argument("--email-rate", type=float, default=100.0, help="configured Gmail sends/s")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument(
        "--in-flight",
        type=int,
        default=8,
        help="provider calls at once per replica (the emulators share a core)",
    )
    args = ap.parse_args()
    rng = random.Random(11)
    n_sms = args.notices // 2
    day, night = daytime_zone(), night_zone()
    notices, opted, nights = [], set(), set()
    for i in range(args.notices):
        ch = "sms" if i < n_sms else "email"
        to = f"+1555{i:07d}" if ch == "sms" else f"debtor{i}@example.com"
        zone = night if i % 100 == 0 else day
        n = notice(channel=ch, to=to, tier=rng.choice(list(Tier)), timezone=zone)
        notices.append(n)
        if i % 100 == 0:
            nights.add(n.notice_id)
        elif i % 50 == 1:
            opted.add(n.notice_id)
    replies = [opt_out(n.account_id, n.channel) for n in notices if n.notice_id in opted]

    with (
        tempfile.TemporaryDirectory(prefix="chaos") as d,
        EmbeddedBroker() as broker,
        EmbeddedPostgres(Path(d) / "pg", fast=True) as pg,
        Emulator(
            "quo",
            QuoConfig(
                phone_numbers={FROM: "PNchaos0001"},
                limits=LimitsConfig(rate=args.sms_rate),
                delivery_delay_ms=0,
            ),
            Path(d),
        ) as quo,
        Emulator(
            "gmail",
            GmailConfig(
                user_email=SENDER,
                limits=LimitsConfig(rate=args.email_rate * 100, daily_limit=10_000_000),
                bounce_domains=set(),
            ),
            Path(d),
        ) as gmail,
    ):
        logs = Path(d) / "logs"
        url = pg.create_database("chaos")
        await asyncio.to_thread(upgrade, url, "dispatcher-sms")
        await asyncio.to_thread(upgrade, url, "dispatcher-email")
        await ensure_topics(broker.bootstrap_servers, 4)
        await control(f"{quo.url}/_emulator/faults", faults(args.fault_rate, ["send"]))
        await control(f"{gmail.url}/_emulator/faults", faults(args.fault_rate, ["users.messages.send"]))
        env = {
            "ARREARS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "ARREARS_DATABASE_URL": url,
            "ARREARS_HTTP_HOST": "127.0.0.1",
            "ARREARS_LOG_LEVEL": "WARNING",
            "ARREARS_QUO_BASE_URL": f"{quo.url}/v1",
            "ARREARS_QUO_API_KEY": "chaos-key",
            "ARREARS_QUO_FROM_NUMBER": FROM,
            "ARREARS_QUO_RATE_PER_S": str(args.sms_rate),
            "ARREARS_QUO_TIMEOUT_S": "1.0",
            "ARREARS_GMAIL_API_ENDPOINT": gmail.url,
            "ARREARS_GMAIL_TOKEN": "chaos-token",
            "ARREARS_GMAIL_SENDER": SENDER,
            "ARREARS_GMAIL_RATE_PER_S": str(args.email_rate),
            "ARREARS_GMAIL_TIMEOUT_S": "1.0",
            "ARREARS_GMAIL_DAILY_QUOTA": "10000000",
            "ARREARS_DISPATCH_WORKERS": "4",
            "ARREARS_DISPATCH_MAX_IN_FLIGHT": str(args.in_flight),
            "ARREARS_QUO_MAX_CONNECTIONS": str(args.in_flight),
            "ARREARS_DISPATCH_MAX_ATTEMPTS": "10",
            "ARREARS_DISPATCH_BACKOFF_BASE_S": "0.2",
            "ARREARS_DISPATCH_BACKOFF_MAX_S": "2",
            "ARREARS_DISPATCH_IN_DOUBT_AFTER_S": "4",
            "ARREARS_DISPATCH_RECONCILE_INTERVAL_S": "1",
            "ARREARS_DISPATCH_SEND_TIMEOUT_S": "3",
            "ARREARS_DISPATCH_IDLE_POLL_S": "0.1",
            "ARREARS_DISPATCH_BREAKER_FAILURES": "1000",
            "ARREARS_DISPATCH_BREAKER_COOLDOWN_S": "1",
        }
        procs = [
            dispatcher(f"{svc}-{i}", svc, env, logs)
            for svc in ("dispatcher-sms", "dispatcher-email")
            for i in (1, 2)
        ]
        await publish(broker.bootstrap_servers, replies)
        # The opt-outs are on another topic than the notices (no order between them): let the dispatchers
        # record them first, as they would have been long before a real backlog is sent.
        await wait_opt_outs(url, len(replies))
        await publish(broker.bootstrap_servers, notices)
        print(
            f"published {len(notices)} notices ({len(opted)} opted out, {len(nights)} in quiet hours)",
            flush=True,
        )
        started = time.monotonic()
        next_kill = started + args.kill_every
        kills = 0
        last_report = started
        try:
            while True:
                await asyncio.sleep(1.0)
                now = time.monotonic()
                if now >= next_kill:
                    await kill_and_restart(rng.choice(procs))
                    kills += 1
                    next_kill = now + args.kill_every
                rows, settled = await progress(url)
                if now - last_report >= 10:
                    last_report = now
                    print(
                        f"t={now - started:.0f}s settled={settled}/{len(notices)} kills={kills}", flush=True
                    )
                if rows == len(notices) and settled == len(notices):
                    break
                if now - started > args.timeout:
                    print("timed out waiting for every notice to settle", flush=True)
                    break
        finally:
            for p in procs:
                p.stop()
        elapsed = time.monotonic() - started
        quo_ledger = await fetch(f"{quo.url}/_emulator/ledger")
        gmail_ledger = await fetch(f"{gmail.url}/_emulator/ledger")
        quo_stats = await fetch(f"{quo.url}/_emulator/stats")
        gmail_stats = await fetch(f"{gmail.url}/_emulator/stats")
        rate_violations = quo_stats["rate_limited"] + gmail_stats["rate_limited"]
        for name, stats, led in (("quo", quo_stats, quo_ledger), ("gmail", gmail_stats, gmail_ledger)):
            dropped = sum(1 for e in led["entries"] if e.get("dropped"))
            print(
                f"{name}: {stats['requests_total']} requests {stats['by_operation']},"
                f" faults injected {stats['faults_injected']}, {dropped} sends accepted then"
                f" their answer dropped (in doubt, reconciled)",
                flush=True,
            )
        st = await outcome(url)

    by_recipient = Counter(e["recipient"] for e in quo_ledger["entries"]) + Counter(
        e["notice_id"] for e in gmail_ledger["entries"]
    )
    delivered = failed = lost = duplicates = violations = 0
    for n in notices:
        key = n.to if n.channel == "sms" else n.notice_id
        seen = by_recipient.get(key, 0)
        duplicates += max(0, seen - 1)
        row = st.get(n.notice_id)
        if n.notice_id in opted or n.notice_id in nights:
            violations += seen
        if row is None:
            lost += 1
        elif row["state"] == "sent":
            delivered += 1
            lost += 0 if seen >= 1 else 1
        elif row["state"] in ("failed", "suppressed") and row["last_error"]:
            failed += 1
        elif n.notice_id in nights and (row["last_error"] or "").startswith("deferred:"):
            pass  # deferred to the next allowed moment by a compliance rule: not due yet
        else:
            lost += 1
    print(
        f"{elapsed:.0f}s, {kills} SIGKILLs, {len(nights)} deferred by quiet hours, compliance violations={violations}",
        flush=True,
    )
    print(
        f"CHAOS dispatch notices={len(notices)} delivered={delivered} failed={failed} lost={lost}"
        f" duplicates={duplicates} rate_violations={rate_violations}",
        flush=True,
    )
    return 0 if lost == duplicates == rate_violations == violations == 0 else 1


if __name__ == "__main__":
    ensure_stack_keys()
    sys.exit(asyncio.run(main()))
