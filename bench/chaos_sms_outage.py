"""Chaos run of SMS failover (issue #18): QUO goes down for `--outage-s` (default 10 minutes) in the middle of a
run; queued SMS steps whose policy falls back to email go by email after `--failover-after-s`, the others
wait for QUO; two replicas of each dispatcher, one killed with SIGKILL every `--kill-every` seconds. With
`--twilio`, Twilio is the second SMS provider: it carries SMS while QUO is down and goes down itself for the
second half of QUO's outage (then the email failover takes over).

The stack: embedded broker and PostgreSQL, QUO and Gmail emulators in their own processes, dispatcher-sms x2
and dispatcher-email x2 (`python -m arrears_dispatcher_*`). Notices are published in waves before, during and
after the outage; `--email-share` of the steps fall back to email (as the segmenter emits them).

Every send is counted at the emulators' ledgers, per step (its phone number at QUO and Twilio plus its address
at Gmail):
  reached_once  = steps sent exactly once over both channels
  reached_twice = steps sent more than once (SMS and email, or twice on one)
  unreached     = steps never sent
Last line exactly:
  CHAOS sms_outage accounts=<n> steps=<n> reached_once=<n> reached_twice=<n> unreached=<n>
Exit status 0 only when reached_twice=0 and unreached=0.

Usage: python bench/chaos_sms_outage.py [--accounts 2000] [--outage-s 600] [--failover-after-s 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from arrears_cli.stack.broker import EmbeddedBroker
from arrears_cli.stack.postgres import EmbeddedPostgres
from arrears_cli.stack.topics import ensure_topics
from arrears_emulators.common import LimitsConfig
from arrears_emulators.gmail.app import GmailConfig
from arrears_emulators.quo.app import QuoConfig
from arrears_emulators.twilio.app import DEFAULT_SID, DEFAULT_TOKEN, TwilioConfig
from arrears_shared.db.migrate import upgrade
from arrears_shared.events import NoticeDue

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from chaos_dispatch import FROM, SENDER, Emulator, control, dispatcher, fetch, publish  # noqa: E402
from common import ensure_stack_keys, kill_and_restart  # noqa: E402

from tests.dispatch.helpers import daytime_zone, notice  # noqa: E402


def steps(accounts: int, email_share: float, rng: random.Random) -> list[NoticeDue]:
    zone = daytime_zone()
    out = []
    for i in range(accounts):
        n = notice(to=f"+1556{i:07d}", timezone=zone)
        if rng.random() < email_share:
            n = n.model_copy(
                update={"fallback_channels": ["email"], "fallback_to": {"email": f"debtor{i}@example.com"}}
            )
        out.append(n)
    return out


TWILIO_FROM = "+15550000009"


async def counts(quo: str, gmail: str, twilio: str | None) -> tuple[Counter[str], Counter[str]]:
    """(SMS sends by phone number over QUO and Twilio, email sends by address)."""
    urls = [quo, gmail] + ([twilio] if twilio else [])
    ledgers = await asyncio.gather(*(fetch(f"{u}/_emulator/ledger") for u in urls))
    sms = Counter(e["recipient"] for e in ledgers[0]["entries"])
    for extra in ledgers[2:]:
        sms.update(e["recipient"] for e in extra["entries"])
    return sms, Counter(e["recipient"] for e in ledgers[1]["entries"])


def verdict(all_steps: list[NoticeDue], sms: Counter[str], email: Counter[str]) -> Counter[str]:
    out: Counter[str] = Counter()
    for n in all_steps:
        k = sms.get(n.to, 0) + email.get(n.fallback_to.get("email", "").lower(), 0)
        out["once" if k == 1 else "twice" if k > 1 else "unreached"] += 1
    return out


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--outage-s", type=float, default=600.0, help="how long QUO is down")
    ap.add_argument("--before-s", type=float, default=30.0, help="normal traffic before the outage")
    ap.add_argument("--failover-after-s", type=float, default=60.0, help="ARREARS_DISPATCH_FAILOVER_AFTER_S")
    ap.add_argument("--email-share", type=float, default=0.7, help="steps whose policy falls back to email")
    ap.add_argument("--sms-rate", type=float, default=20.0)
    ap.add_argument(
        "--kill-every", type=float, default=20.0, help="SIGKILL a dispatcher this often (0 = never)"
    )
    ap.add_argument("--timeout", type=float, default=600.0, help="drain time allowed after the outage")
    ap.add_argument(
        "--twilio", action="store_true", help="Twilio as the second SMS provider (down half the time)"
    )
    args = ap.parse_args()
    ensure_stack_keys()
    rng = random.Random(18)
    all_steps = steps(args.accounts, args.email_share, rng)
    waves = [all_steps[i::3] for i in range(3)]  # before, during and after the outage

    with (
        tempfile.TemporaryDirectory(prefix="chaos-sms") as d,
        EmbeddedBroker() as broker,
        EmbeddedPostgres(Path(d) / "pg", fast=True) as pg,
        Emulator(
            "quo",
            QuoConfig(phone_numbers={FROM: "PNchaos0001"}, limits=LimitsConfig(rate=args.sms_rate)),
            Path(d),
        ) as quo,
        Emulator(
            "gmail",
            GmailConfig(user_email=SENDER, limits=LimitsConfig(rate=10_000, daily_limit=10_000_000)),
            Path(d),
        ) as gmail,
        contextlib.ExitStack() as extra,
    ):
        twilio = (
            extra.enter_context(
                Emulator(
                    "twilio",
                    TwilioConfig(from_numbers={TWILIO_FROM}, limits=LimitsConfig(rate=args.sms_rate)),
                    Path(d),
                )
            )
            if args.twilio
            else None
        )
        url = pg.create_database("chaos")
        await asyncio.to_thread(upgrade, url, "dispatcher-sms")
        await asyncio.to_thread(upgrade, url, "dispatcher-email")
        await ensure_topics(broker.bootstrap_servers, 4)
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
            "ARREARS_GMAIL_RATE_PER_S": "50",
            "ARREARS_GMAIL_DAILY_QUOTA": "10000000",
            # ARREARS_DISPATCH_MAX_ATTEMPTS stays at its default (6): a failed half-open trial uses no attempt,
            # so the steps waiting out a 10-minute outage are not dead-lettered
            "ARREARS_DISPATCH_BACKOFF_BASE_S": "0.2",
            "ARREARS_DISPATCH_BACKOFF_MAX_S": "2",
            "ARREARS_DISPATCH_IN_DOUBT_AFTER_S": "4",
            "ARREARS_DISPATCH_RECONCILE_INTERVAL_S": "1",
            "ARREARS_DISPATCH_SEND_TIMEOUT_S": "3",
            "ARREARS_DISPATCH_IDLE_POLL_S": "0.1",
            "ARREARS_DISPATCH_BREAKER_FAILURES": "5",
            "ARREARS_DISPATCH_BREAKER_COOLDOWN_S": "5",
            "ARREARS_DISPATCH_FAILOVER_AFTER_S": str(args.failover_after_s),
            "ARREARS_DISPATCH_FAILOVER_INTERVAL_S": "1",
        }
        if twilio is not None:
            env |= {
                "ARREARS_TWILIO_BASE_URL": twilio.url,
                "ARREARS_TWILIO_ACCOUNT_SID": DEFAULT_SID,
                "ARREARS_TWILIO_AUTH_TOKEN": DEFAULT_TOKEN,
                "ARREARS_TWILIO_FROM_NUMBER": TWILIO_FROM,
                "ARREARS_TWILIO_RATE_PER_S": str(args.sms_rate),
                "ARREARS_TWILIO_TIMEOUT_S": "1.0",
            }
        logs = Path(d) / "logs"
        procs = [
            dispatcher(f"{s}-{i}", s, env, logs)
            for s in ("dispatcher-sms", "dispatcher-email")
            for i in (1, 2)
        ]
        kills = 0

        async def run_for(seconds: float) -> None:
            nonlocal kills
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                await asyncio.sleep(min(args.kill_every or 1.0, max(0.0, end - time.monotonic())))
                if args.kill_every and time.monotonic() < end:
                    await kill_and_restart(procs[rng.randrange(len(procs))])
                    kills += 1

        try:
            await publish(broker.bootstrap_servers, waves[0])
            await run_for(args.before_s)
            await control(f"{quo.url}/_emulator/faults", {"clear": True, "error_5xx": {"probability": 1.0}})
            print(f"QUO down for {args.outage_s:.0f} s", flush=True)
            await publish(broker.bootstrap_servers, waves[1])
            if twilio is None:
                await run_for(args.outage_s)
            else:
                await run_for(args.outage_s / 2)
                await control(
                    f"{twilio.url}/_emulator/faults", {"clear": True, "error_5xx": {"probability": 1.0}}
                )
                print(f"Twilio down too for {args.outage_s / 2:.0f} s", flush=True)
                await run_for(args.outage_s / 2)
                await control(f"{twilio.url}/_emulator/faults", {"clear": True})
            await control(f"{quo.url}/_emulator/faults", {"clear": True})
            print("QUO back", flush=True)
            await publish(broker.bootstrap_servers, waves[2])
            deadline = time.monotonic() + args.timeout
            while time.monotonic() < deadline:
                v = verdict(all_steps, *await counts(quo.url, gmail.url, twilio.url if twilio else None))
                if v["once"] + v["twice"] == len(all_steps):
                    break
                await asyncio.sleep(2.0)
            await asyncio.sleep(5.0)  # give a late double send the chance to show up
            sms, email = await counts(quo.url, gmail.url, twilio.url if twilio else None)
        finally:
            for p in procs:
                p.stop()
    v = verdict(all_steps, sms, email)
    print(
        f"kills={kills} sms_sends={sum(sms.values())} email_sends={sum(email.values())}"
        f" with_email_fallback={sum(1 for n in all_steps if n.fallback_channels)}",
        flush=True,
    )
    print(
        f"CHAOS sms_outage accounts={args.accounts} steps={len(all_steps)} reached_once={v['once']}"
        f" reached_twice={v['twice']} unreached={v['unreached']}",
        flush=True,
    )
    return 0 if v["twice"] == 0 and v["unreached"] == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
