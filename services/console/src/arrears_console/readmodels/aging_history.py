"""Daily aging snapshots: the aging report (buckets x currency) stored once per UTC day, so the aging page can
show how the arrears moved over time. The console's `aging_snapshot_loop` takes today's snapshot at start
(when missing) and then on the first check of every new UTC day; taking a day twice changes nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import cast

from arrears_shared.money import RateTable
from arrears_shared.service import Context
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..settings import ConsoleSettings
from .service import BUCKETS, aging

log = logging.getLogger(__name__)

_LOCK = 0x41474553  # "AGES": one writer at a time across console instances


async def snapshot_aging(
    conn: AsyncConnection, schema: str, day: date, rates: RateTable | None = None
) -> int:
    """Store `day`'s aging (as the read models are now) unless that day is stored already. Returns rows
    written (0 when the day was there, or when there is nothing outstanding: the next check tries again)."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK})
    done = (
        await conn.execute(text(f"SELECT 1 FROM {schema}.aging_snapshots WHERE day = :d LIMIT 1"), {"d": day})
    ).first()
    if done:
        return 0
    report = await aging(conn, schema, day, rates)
    rows = [
        {
            "day": day,
            "bucket": r.bucket,
            "currency": r.currency,
            "accounts": r.accounts,
            "balance_minor": r.balance_minor,
            "reporting_minor": r.reporting_minor,
            "reporting_currency": report.reporting_currency,
        }
        for r in report.rows
    ]
    if not rows:
        return 0
    await conn.execute(
        text(
            f"""INSERT INTO {schema}.aging_snapshots
                (day, bucket, currency, accounts, balance_minor, reporting_minor, reporting_currency)
            VALUES (:day, :bucket, :currency, :accounts, :balance_minor, :reporting_minor, :reporting_currency)
            ON CONFLICT (day, bucket, currency) DO NOTHING"""
        ),
        rows,
    )
    return len(rows)  # under the lock, with the day absent: every row went in


@dataclass
class AgingTrend:
    """Per day and bucket, the outstanding balance in the reporting currency (rows in another reporting
    currency, or without a rate, are left out and counted in `left_out`). `days` is every day of the
    period; `reporting` and `accounts` hold only the days with a snapshot."""

    days: list[date]
    buckets: list[str]
    reporting_currency: str
    reporting: dict[date, dict[str, int]]  # day -> bucket -> reporting minor units
    accounts: dict[date, dict[str, int]]  # day -> bucket -> accounts (every currency)
    left_out: int

    @property
    def snapshot_days(self) -> list[date]:
        return [d for d in self.days if d in self.accounts]

    def series(self, bucket: str) -> list[int | None]:
        return [self.reporting[d].get(bucket, 0) if d in self.reporting else None for d in self.days]

    def totals(self) -> list[int | None]:
        return [sum(self.reporting[d].values()) if d in self.reporting else None for d in self.days]


async def aging_trend(
    conn: AsyncConnection, schema: str, start: date, end: date, reporting_currency: str
) -> AgingTrend:
    rows = (
        await conn.execute(
            text(
                f"""SELECT day, bucket, reporting_currency, sum(accounts) AS accounts,
                       sum(reporting_minor) AS reporting, count(*) FILTER (WHERE reporting_minor IS NULL) AS unpriced
                FROM {schema}.aging_snapshots WHERE day BETWEEN :a AND :b
                GROUP BY day, bucket, reporting_currency ORDER BY day"""
            ),
            {"a": start, "b": end},
        )
    ).all()
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    reporting: dict[date, dict[str, int]] = {}
    accounts: dict[date, dict[str, int]] = {}
    left_out = 0
    for r in rows:
        if r.day not in accounts:
            accounts[r.day] = {}
            reporting[r.day] = {}
        accounts[r.day][r.bucket] = accounts[r.day].get(r.bucket, 0) + int(r.accounts)
        left_out += int(r.unpriced)
        if r.reporting_currency != reporting_currency:
            left_out += 1
            continue
        reporting[r.day][r.bucket] = reporting[r.day].get(r.bucket, 0) + int(r.reporting or 0)
    return AgingTrend(days, list(BUCKETS), reporting_currency, reporting, accounts, left_out)


def today_utc() -> date:
    return datetime.now(UTC).date()


async def aging_snapshot_loop(ctx: Context) -> None:
    """Snapshot today at start when missing, then check every `console_aging_snapshot_check_s`."""
    settings = cast(ConsoleSettings, ctx.settings)
    while True:
        try:
            async with ctx.engine.begin() as conn:
                written = await snapshot_aging(conn, ctx.schema, today_utc())
            if written:
                log.info("aging snapshot taken", extra={"rows": written})
        except Exception:  # a database blip: try again at the next check
            log.exception("aging snapshot failed")
        if not await ctx.sleep(settings.console_aging_snapshot_check_s):
            return
