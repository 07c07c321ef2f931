"""Dispatch benchmark: one dispatcher replica (one DeliveryEngine with its send workers) on the embedded
PostgreSQL (durable, as `arrears up` runs it), the real QUO / Gmail clients, and the emulators as their
own processes.

  sms_per_s / email_per_s = notices already in the delivery queue -> all sent, with the emulators' limits
                            lifted and our limiter set out of the way (pure dispatcher throughput);
  quota_utilisation        = with the real QUO limit (10 requests/s) and our limiter at the same rate, the
                            share of the provider's capacity used over --window seconds of backlog;
  provider_429             = 429 answers during that window (target 0).
The last line printed is exactly:
  BENCH dispatch sms_per_s=<n> email_per_s=<n> quota_utilisation=<0..1> provider_429=<n>

Usage: python bench/dispatch.py [--notices 5000] [--workers 4] [--in-flight 16] [--window 60]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from arrears_cli.stack.postgres import EmbeddedPostgres
from arrears_cli.stack.processes import ManagedProcess, ProcessSpec
from arrears_dispatcher_email.__main__ import build_engine as build_email
from arrears_dispatcher_email.settings import EmailSettings
from arrears_dispatcher_sms.__main__ import build_engine as build_sms
from arrears_dispatcher_sms.settings import SmsSettings
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.delivery import DeliveryEngine, allow_all
from arrears_shared.events import Channel
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.dispatch.helpers import feed, notice  # noqa: E402

FROM = "+15550000001"
SENDER = "collections@arrears.test"


def emulator(name: str, *args: str) -> tuple[ManagedProcess, str]:
    p = ManagedProcess(
        ProcessSpec(name=name, argv=[sys.executable, "-m", "arrears_emulators", name, "--port", "0", *args])
    ).start()
    line = p.wait_for_line(rf"EMULATOR {name} ready (\S+)", timeout=30)
    return p, line.rsplit(" ", 1)[-1].strip()


async def load(eng: DeliveryEngine, schema: str, channel: Channel, n: int) -> None:
    batch = 500
    for i in range(0, n, batch):
        ns = [
            notice(channel=channel, to=f"+1555{j:07d}" if channel == Channel.SMS else f"d{j}@example.com")
            for j in range(i, min(n, i + batch))
        ]
        await feed(eng, ns, schema)


async def sent_count(eng: DeliveryEngine, schema: str) -> int:
    async with eng.engine.connect() as c:
        return (
            await c.execute(text(f"SELECT count(*) FROM {schema}.deliveries WHERE state = 'sent'"))
        ).scalar_one()


async def throughput(eng: DeliveryEngine, schema: str, channel: Channel, n: int) -> float:
    """Sends/s of one replica draining n queued notices; also prints the dispatcher's CPU per send (this
    process: engine, client, threads), which does not depend on what else the machine is doing."""
    await load(eng, schema, channel, n)
    stopping = asyncio.Event()
    cpu0 = time.process_time()
    t0 = time.monotonic()
    run = asyncio.create_task(eng.run(stopping))
    try:
        while await sent_count(eng, schema) < n:
            await asyncio.sleep(0.1)
            if run.done():
                run.result()
        wall = time.monotonic() - t0
        cpu = time.process_time() - cpu0
        print(
            f"{channel.value}: dispatcher CPU {cpu / n * 1000:.2f} ms per send"
            f" ({cpu / wall:.0%} of one core used; the rest was waiting or starved)",
            flush=True,
        )
        return n / wall
    finally:
        stopping.set()
        await run


def common(url: str, workers: int, in_flight: int) -> dict[str, Any]:
    return {
        "database_url": url,
        "dispatch_workers": workers,
        "dispatch_max_in_flight": in_flight,
        "dispatch_idle_poll_s": 0.05,
        "dispatch_backoff_base_s": 0.1,
        "dispatch_in_doubt_after_s": 30,
    }


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--notices", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument("--in-flight", type=int, default=16, help="provider calls at once per replica")
    ap.add_argument("--phases", default="sms,email,quota", help="comma-separated subset of sms,email,quota")
    args = ap.parse_args()
    phases = set(args.phases.split(","))
    sms_per_s = email_per_s = utilisation = 0.0
    provider_429 = 0
    quo_p, quo = emulator("quo", "--no-rate-limit", "--delivery-delay-ms", "0")
    gmail_p, gmail = emulator("gmail", "--no-rate-limit", "--daily-limit", "100000000")
    try:
        with tempfile.TemporaryDirectory(prefix="bench") as d, EmbeddedPostgres(Path(d) / "pg") as pg:
            url = pg.create_database("bench")
            await asyncio.to_thread(upgrade, url, "dispatcher-sms")
            await asyncio.to_thread(upgrade, url, "dispatcher-email")
            ae = make_engine(url, pool_size=args.workers + 4)
            sms_cfg = {
                **common(url, args.workers, args.in_flight),
                "service_name": "dispatcher-sms",
                "quo_base_url": f"{quo}/v1",
                "quo_api_key": "bench",
                "quo_from_number": FROM,
                "quo_max_connections": args.in_flight,
            }
            sms = build_sms(SmsSettings(**sms_cfg, quo_rate_per_s=1e6, quo_rate_burst=1e6), gate=allow_all)
            sms.bind(ae, "dispatcher_sms", "dispatcher-sms")
            sms_per_s = await throughput(sms, "dispatcher_sms", Channel.SMS, args.notices)
            print(f"sms: {args.notices} notices, {sms_per_s:,.0f} sends/s (one replica)", flush=True)
            await sms.channel.aclose()  # type: ignore[attr-defined]

            email = build_email(
                EmailSettings(
                    **common(url, args.workers, args.in_flight),
                    service_name="dispatcher-email",
                    gmail_api_endpoint=gmail,
                    gmail_token="bench",
                    gmail_sender=SENDER,
                    gmail_rate_per_s=1e6,
                    gmail_rate_burst=1e6,
                    gmail_daily_quota=None,
                ),
                gate=allow_all,
            )
            email.bind(ae, "dispatcher_email", "dispatcher-email")
            email_per_s = await throughput(email, "dispatcher_email", Channel.EMAIL, args.notices)
            print(f"email: {args.notices} notices, {email_per_s:,.0f} sends/s (one replica)", flush=True)
            await email.channel.aclose()  # type: ignore[attr-defined]

            # Real limits: QUO 10 requests/s per key, our limiter at the same 10/s, a backlog bigger
            # than the window can drain.
            rate = 10.0
            async with httpx.AsyncClient() as h:
                (
                    await h.put(f"{quo}/_emulator/limits", json={"enabled": True, "rate": rate})
                ).raise_for_status()
                (await h.post(f"{quo}/_emulator/reset")).raise_for_status()
                (
                    await h.put(f"{quo}/_emulator/limits", json={"enabled": True, "rate": rate})
                ).raise_for_status()
            async with ae.begin() as c:
                await c.execute(text("TRUNCATE dispatcher_sms.deliveries, dispatcher_sms.rate_limiter"))
            limited = build_sms(
                SmsSettings(**{**sms_cfg, "dispatch_workers": 4}, quo_rate_per_s=rate), gate=allow_all
            )
            limited.bind(ae, "dispatcher_sms", "dispatcher-sms")
            await load(limited, "dispatcher_sms", Channel.SMS, int(rate * args.window * 1.5))
            stopping = asyncio.Event()
            run = asyncio.create_task(limited.run(stopping))
            await asyncio.sleep(args.window)
            stopping.set()
            await run
            await limited.channel.aclose()  # type: ignore[attr-defined]
            async with httpx.AsyncClient() as h:
                stats = (await h.get(f"{quo}/_emulator/stats")).json()
                entries = (await h.get(f"{quo}/_emulator/ledger")).json()["entries"]
            provider_429 = int(stats["rate_limited"])
            utilisation = min(1.0, len(entries) / (rate * args.window))
            print(
                f"real limits: {len(entries)} sends in {args.window:.0f}s at {rate:.0f}/s,"
                f" utilisation {utilisation:.3f}, {provider_429} provider 429s",
                flush=True,
            )
            await ae.dispose()
    finally:
        quo_p.stop()
        gmail_p.stop()
    print(
        f"BENCH dispatch sms_per_s={sms_per_s:.0f} email_per_s={email_per_s:.0f}"
        f" quota_utilisation={utilisation:.3f} provider_429={provider_429}",
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
