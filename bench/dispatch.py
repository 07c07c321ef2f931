"""Dispatch benchmark: one dispatcher replica (one DeliveryEngine with its send workers, default settings:
4 workers, batches of up to 50, 32 provider calls in flight) on the embedded PostgreSQL (durable, as
`arrears up` runs it), the real QUO / Gmail clients, and the emulators as their own processes.

  sms_per_s / email_per_s = notices already in the delivery queue -> all sent, with the emulators' limits
                            lifted and our limiter set out of the way (pure dispatcher throughput);
  quota_utilisation        = with the real limits (QUO 10 requests/s per key, Gmail 250 quota units/s per
                            user = 2.5 sends/s) and our limiters at the same rates, both dispatchers at once
                            against a backlog: the share of each provider's capacity used over --window
                            seconds (the lower of the two);
  provider_429             = 429 answers from both providers during that window (target 0).
The last line printed is exactly:
  BENCH dispatch sms_per_s=<n> email_per_s=<n> quota_utilisation=<0..1> provider_429=<n>

Usage: python bench/dispatch.py [--notices 5000] [--workers 4] [--in-flight 32] [--window 60]
                                [--phases sms,email,quota]
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
from common import ensure_stack_keys  # noqa: E402

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
            notice(channel=channel, to=f"+1555{j:07d}" if channel == "sms" else f"d{j}@example.com")
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
            f"{channel}: dispatcher CPU {cpu / n * 1000:.2f} ms per send"
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


def sms_settings(url: str, quo: str, workers: int, in_flight: int, **extra: Any) -> SmsSettings:
    return SmsSettings(
        **common(url, workers, in_flight),
        service_name="dispatcher-sms",
        quo_base_url=f"{quo}/v1",
        quo_api_key="bench",
        quo_from_number=FROM,
        quo_max_connections=in_flight,
        **extra,
    )


def email_settings(url: str, gmail: str, workers: int, in_flight: int, **extra: Any) -> EmailSettings:
    return EmailSettings(
        **common(url, workers, in_flight),
        service_name="dispatcher-email",
        gmail_api_endpoint=gmail,
        gmail_token="bench",
        gmail_sender=SENDER,
        **extra,
    )


async def saturate(
    eng: DeliveryEngine, schema: str, channel: Channel, emulator_url: str, rate: float, window: float
) -> tuple[int, int]:
    """Run one replica against a backlog bigger than `window` seconds at `rate` can drain, with the
    provider's real limit; returns (messages the provider accepted, 429 answers)."""
    async with httpx.AsyncClient() as h:
        (await h.post(f"{emulator_url}/_emulator/reset")).raise_for_status()
    await load(eng, schema, channel, int(rate * window * 1.5) + 10)
    stopping = asyncio.Event()
    run = asyncio.create_task(eng.run(stopping))
    await asyncio.sleep(window)
    stopping.set()
    await run
    await eng.channel.aclose()  # type: ignore[attr-defined]
    async with httpx.AsyncClient() as h:
        stats = (await h.get(f"{emulator_url}/_emulator/stats")).json()
        entries = (await h.get(f"{emulator_url}/_emulator/ledger")).json()["entries"]
    return len(entries), int(stats["rate_limited"])


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--notices", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--window", type=float, default=60.0)
    ap.add_argument(
        "--in-flight", type=int, default=32, help="provider calls at once per replica (the default)"
    )
    ap.add_argument("--phases", default="sms,email,quota", help="comma-separated subset of sms,email,quota")
    args = ap.parse_args()
    phases = set(args.phases.split(","))
    sms_per_s = email_per_s = 0.0
    utilisation = 0.0
    provider_429 = 0
    quo_p, quo = emulator("quo", "--no-rate-limit", "--delivery-delay-ms", "0")
    gmail_p, gmail = emulator("gmail", "--no-rate-limit", "--daily-limit", "100000000")
    try:
        with tempfile.TemporaryDirectory(prefix="bench") as d, EmbeddedPostgres(Path(d) / "pg") as pg:
            url = pg.create_database("bench")
            await asyncio.to_thread(upgrade, url, "dispatcher-sms")
            await asyncio.to_thread(upgrade, url, "dispatcher-email")
            ae = make_engine(url, pool_size=2 * args.workers + 4)
            w, f = args.workers, args.in_flight
            if "sms" in phases:
                sms = build_sms(
                    sms_settings(url, quo, w, f, quo_rate_per_s=1e6, quo_rate_burst=1e6), gate=allow_all
                )
                sms.bind(ae, "dispatcher_sms", "dispatcher-sms")
                sms_per_s = await throughput(sms, "dispatcher_sms", "sms", args.notices)
                print(f"sms: {args.notices} notices, {sms_per_s:,.0f} sends/s (one replica)", flush=True)
                await sms.channel.aclose()  # type: ignore[attr-defined]
            if "email" in phases:
                email = build_email(
                    email_settings(
                        url, gmail, w, f, gmail_rate_per_s=1e6, gmail_rate_burst=1e6, gmail_daily_quota=None
                    ),
                    gate=allow_all,
                )
                email.bind(ae, "dispatcher_email", "dispatcher-email")
                email_per_s = await throughput(email, "dispatcher_email", "email", args.notices)
                print(f"email: {args.notices} notices, {email_per_s:,.0f} sends/s (one replica)", flush=True)
                await email.channel.aclose()  # type: ignore[attr-defined]
            if "quota" in phases:
                # The real limits, both providers at once: QUO 10 requests/s per key, Gmail 250 quota units/s
                # per user (messages.send costs 100 units: 2.5 sends/s); our limiters at the same rates.
                quo_rate, gmail_units = 10.0, 250.0
                gmail_rate = gmail_units / 100
                async with httpx.AsyncClient() as h:
                    for u, body in (
                        (quo, {"enabled": True, "rate": quo_rate}),
                        (gmail, {"enabled": True, "rate": gmail_units}),
                    ):
                        (await h.put(f"{u}/_emulator/limits", json=body)).raise_for_status()
                async with ae.begin() as c:
                    await c.execute(
                        text(
                            "TRUNCATE dispatcher_sms.deliveries, dispatcher_sms.rate_limiter,"
                            " dispatcher_email.deliveries, dispatcher_email.rate_limiter"
                        )
                    )
                limited_sms = build_sms(sms_settings(url, quo, w, f, quo_rate_per_s=quo_rate), gate=allow_all)
                limited_sms.bind(ae, "dispatcher_sms", "dispatcher-sms")
                limited_email = build_email(
                    email_settings(url, gmail, w, f, gmail_rate_per_s=gmail_rate, gmail_daily_quota=None),
                    gate=allow_all,
                )
                limited_email.bind(ae, "dispatcher_email", "dispatcher-email")
                (sms_sent, sms_429), (mail_sent, mail_429) = await asyncio.gather(
                    saturate(limited_sms, "dispatcher_sms", "sms", quo, quo_rate, args.window),
                    saturate(limited_email, "dispatcher_email", "email", gmail, gmail_rate, args.window),
                )
                u_sms = sms_sent / (quo_rate * args.window)
                u_mail = mail_sent / (gmail_rate * args.window)
                for name, sent, rate, u, n429 in (
                    ("quo", sms_sent, quo_rate, u_sms, sms_429),
                    ("gmail", mail_sent, gmail_rate, u_mail, mail_429),
                ):
                    print(
                        f"real limits, {name}: {sent} sends in {args.window:.0f}s at {rate:g}/s,"
                        f" utilisation {u:.3f}, {n429} provider 429s",
                        flush=True,
                    )
                utilisation = min(1.0, u_sms, u_mail)
                provider_429 = sms_429 + mail_429
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
    ensure_stack_keys()
    asyncio.run(main())
