"""Console page speed with 100,000 accounts: the pages served from the console's own read models.

Fills the console's read model in a real PostgreSQL (COPY: accounts with names, phones and emails, a timeline
of 3 events per account, opt-outs, rejects, counters), starts the console service in-process (real broker,
real gate: every request carries a session cookie, like a browser), and times each page. The account page and
the worklist also call the segmenter and escalation (one indexed lookup each there); they are not part of
this figure.

Last line: `BENCH console accounts=… <page>_p95_ms=… … max_p95_ms=…` (target: every page under 300 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
from arrears_cli.stack.broker import EmbeddedBroker
from arrears_cli.stack.postgres import EmbeddedPostgres
from arrears_console.__main__ import definition
from arrears_console.settings import ConsoleSettings
from arrears_shared.auth import sessions
from arrears_shared.auth.principal import Principal
from arrears_shared.db.migrate import upgrade
from arrears_shared.service import ServiceHost
from common import ensure_stack_keys  # noqa: E402

PAGES = {
    "dashboard": "/",
    "accounts": "/accounts",
    "bucket": "/accounts?bucket=91-120",
    "search_name": "/accounts?q=garcia",
    "search_phone": "/accounts?q=555+0142",
    "aging": "/aging",
    "aging_csv": "/aging.csv",
}
FIRST = ["Maria", "John", "Ana", "Wei", "Priya", "Lars", "Fatima", "Kenji", "Olu", "Sara"]
LAST = ["Garcia", "Smith", "Nguyen", "Patel", "Muller", "Okafor", "Rossi", "Kim", "Silva", "Haddad"]


async def copy_rows(url: str, n: int) -> None:
    import asyncpg

    rnd = random.Random(7)
    today = date.today()
    now = datetime.now(UTC)
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        accounts = [
            (
                f"PME-{i:06d}",
                f"{rnd.choice(FIRST)} {rnd.choice(LAST)}",
                rnd.randint(1_000, 2_000_000),
                rnd.choice(["USD", "USD", "USD", "EUR", "GBP", "INR"]),
                today - timedelta(days=rnd.randint(-20, 200)),
                rnd.choice(["open", "open", "open", "promise", "dispute", "paid"]),
                "sheet",
                False,
                rnd.random() < 0.8,
                rnd.random() < 0.9,
                None,
                now,
                f"+1555{i:07d}",
                f"customer{i}@example.com",
                rnd.choice([None, None, "big-90", "soft-30"]),
            )
            for i in range(n)
        ]
        await conn.copy_records_to_table(
            "accounts",
            schema_name="console",
            columns=["account_id", "customer_name", "balance_minor", "currency", "due_date", "status", "source",
                     "removed", "sms_consent", "email_consent", "last_payment_date", "as_of", "phone", "email",
                     "campaign_id"],
            records=accounts,
        )  # fmt: skip
        timeline = [
            (
                f"ce-{i}-{k}",
                f"PME-{i:06d}",
                topic,
                f"arrears.{topic}.v1",
                now - timedelta(minutes=k),
                f"{topic} {k}",
            )
            for i in range(n)
            for k, topic in enumerate(("account-changed", "notice-due", "message-sent"))
        ]
        await conn.copy_records_to_table(
            "timeline",
            schema_name="console",
            columns=["ce_id", "account_id", "topic", "ce_type", "at", "summary"],
            records=timeline,
        )
        await conn.execute("ANALYZE console.accounts; ANALYZE console.timeline")
    finally:
        await conn.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=20)
    args = ap.parse_args()
    results: dict[str, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench") as d,
        EmbeddedBroker() as broker,
        EmbeddedPostgres(Path(d) / "pg") as pg,
    ):
        url = pg.create_database("bench")
        await asyncio.to_thread(upgrade, url, "iam")
        await asyncio.to_thread(upgrade, url, "console")
        await copy_rows(url, args.accounts)
        settings = ConsoleSettings(
            kafka_bootstrap_servers=broker.bootstrap_servers, database_url=url, log_level="WARNING"
        )
        host = ServiceHost(definition(settings))
        app = host.build_app()
        await host.start()
        try:
            assert host.ctx is not None
            who = Principal(name="bench", roles=frozenset({"supervisor"}), kind="session", subject="bench")
            async with host.ctx.engine.begin() as conn:
                token, _ = await sessions.open_session(conn, who, timedelta(hours=1))
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://console",
                cookies={sessions.COOKIE: token},
                headers={"accept": "text/html"},
                timeout=60,
            ) as client:
                for name, path in PAGES.items():
                    assert (await client.get(path)).status_code == 200, path  # warm
                    times = []
                    for _ in range(args.requests):
                        t = time.perf_counter()
                        r = await client.get(path)
                        times.append((time.perf_counter() - t) * 1000)
                        assert r.status_code == 200, (path, r.status_code)
                    p95 = statistics.quantiles(times, n=20)[-1]
                    results[name] = p95
                    print(
                        f"{name:<14} {path:<28} p50={statistics.median(times):7.1f} ms  p95={p95:7.1f} ms",
                        flush=True,
                    )
        finally:
            await host.stop()
    figures = " ".join(f"{k}_p95_ms={v:.0f}" for k, v in results.items())
    print(
        f"BENCH console accounts={args.accounts} {figures} max_p95_ms={max(results.values()):.0f}", flush=True
    )


if __name__ == "__main__":
    ensure_stack_keys()
    asyncio.run(main())
