"""Aging trend: the console's daily aging snapshots (taken by its loop at start, idempotent) drawn on /aging
from real read-model rows, and the `?fragment=trend` fragment; the existing chart, table and export stay."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from arrears_console.readmodels.aging_history import aging_snapshot_loop, snapshot_aging
from arrears_console.readmodels.views import today_utc
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.money import format_minor
from auth_support import bearer, issue_key_async
from sqlalchemy import text

from .support import console_host

TODAY = today_utc()
ACCOUNTS = [  # (id, balance, days past due today): 2 days ago A3 was 29 days past due, in 1-30
    ("AG-1", 10_000, 10),
    ("AG-2", 50_000, 40),
    ("AG-3", 7_000, 31),
]


async def test_daily_snapshots_and_trend_on_the_aging_page(
    broker: Any, fresh_database_url: Callable[..., str]
) -> None:
    url = fresh_database_url("console_aging")
    await asyncio.to_thread(upgrade, url, "console")
    async with console_host(broker, url) as (host, c):  # without the loop: this test takes the snapshots
        assert host.ctx is not None
        engine = host.ctx.engine
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    """INSERT INTO console.accounts (account_id, customer_name, balance_minor, currency, due_date,
                       status, source, sms_consent, email_consent, as_of)
                       VALUES (:a, 'N', :b, 'USD', :due, 'open', 'sheet', true, true, now())"""
                ),
                [{"a": a, "b": b, "due": TODAY - timedelta(days=dpd)} for a, b, dpd in ACCOUNTS],
            )
            key = await issue_key_async(conn, "viewer")
            assert await snapshot_aging(conn, "console", TODAY - timedelta(days=2)) == 2
            assert await snapshot_aging(conn, "console", TODAY - timedelta(days=2)) == 0  # once per day
            assert await snapshot_aging(conn, "console", TODAY) == 2  # what the loop does each new day
            assert await snapshot_aging(conn, "console", TODAY) == 0
        async with engine.connect() as conn:
            got = {
                (r.day, r.bucket): (r.accounts, r.balance_minor, r.reporting_minor, r.reporting_currency)
                for r in await conn.execute(text("SELECT * FROM console.aging_snapshots"))
            }
        two_ago = TODAY - timedelta(days=2)
        assert got == {
            (two_ago, "1-30"): (2, 17_000, 17_000, "USD"),
            (two_ago, "31-60"): (1, 50_000, 50_000, "USD"),
            (TODAY, "1-30"): (1, 10_000, 10_000, "USD"),
            (TODAY, "31-60"): (2, 57_000, 57_000, "USD"),
        }

        r = await c.get("/aging", params={"days": 3}, headers=bearer(key))
        assert r.status_code == 200, r.text
        html = r.text
        assert 'id="chart-title"' in html and "/aging.csv" in html  # the existing chart and exports
        assert "Trend over 3 days (USD)" in html
        svg = re.search(r'<svg[^>]*id="aging-trend-chart".*?</svg>', html, re.S)
        assert svg
        s = svg.group(0)
        usd = lambda m: format_minor(m, "USD")  # noqa: E731
        assert f"1-30, {two_ago}: {usd(17_000)}" in s and f"31-60, {TODAY}: {usd(57_000)}" in s
        assert f"Total, {two_ago}: {usd(67_000)}" in s and f"Total, {TODAY}: {usd(67_000)}" in s
        # 3 days over the plot: two days ago at the left edge, today at the right; the total is the axis top
        assert 'cx="64.0" cy="12.0"' in s and 'cx="628.0" cy="12.0"' in s
        assert f'cx="64.0" cy="{12 + 200 - 200 * 17_000 / 67_000:.1f}"' in s
        assert s.count("<polyline") == 7 * 2  # every line broken at yesterday (no snapshot)
        table = html[html.index("The figures") :]
        assert "2 snapshot days" in table and table.index(str(TODAY)) < table.index(
            str(two_ago)
        )  # newest first
        assert '<th scope="col" class="num">31-60</th>' in table and "<caption" in table

        frag = await c.get("/aging", params={"fragment": "trend", "days": 3}, headers=bearer(key))
        assert frag.status_code == 200 and "<html" not in frag.text and 'id="aging-trend-chart"' in frag.text
        assert (await c.get("/aging", params={"days": 1}, headers=bearer(key))).status_code == 422
        recent = await c.get("/aging", params={"fragment": "trend", "days": 2}, headers=bearer(key))
        assert "No figures for this period" not in recent.text and "1 snapshot days" in recent.text
        csv = await c.get("/aging.csv", headers=bearer(key))
        assert csv.status_code == 200 and "31-60" in csv.text


async def test_the_loop_snapshots_today_at_start_when_missing(
    broker: Any, fresh_database_url: Callable[..., str]
) -> None:
    url = fresh_database_url("console_aging_loop")
    await asyncio.to_thread(upgrade, url, "console")
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    """INSERT INTO console.accounts (account_id, customer_name, balance_minor, currency, due_date,
                       status, source, sms_consent, email_consent, as_of)
                       VALUES ('AL-1', 'N', 4200, 'USD', :due, 'open', 'sheet', true, true, :now)"""
                ),
                {"due": TODAY - timedelta(days=95), "now": datetime.now(UTC)},
            )
        async with console_host(broker, url, loops=[aging_snapshot_loop]):
            for _ in range(100):
                async with engine.connect() as conn:
                    rows = (
                        await conn.execute(
                            text("SELECT day, bucket, balance_minor FROM console.aging_snapshots")
                        )
                    ).all()
                if rows:
                    break
                await asyncio.sleep(0.1)
        assert [tuple(r) for r in rows] == [(TODAY, "91-120", 4200)]
        async with console_host(broker, url, loops=[aging_snapshot_loop]):  # a restart the same day
            await asyncio.sleep(0.5)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM console.aging_snapshots"))).scalar() == 1
    finally:
        await engine.dispose()
