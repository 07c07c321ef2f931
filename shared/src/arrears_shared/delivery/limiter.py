"""GCRA rate limiter held in Postgres, shared by every replica of a dispatcher (one row per provider account).

GCRA keeps one timestamp per limiter, the theoretical arrival time (TAT). With emission interval T = 1/rate
and burst b, a request at `now` is allowed when `max(TAT, now) + T - b*T <= now`; allowing it moves TAT to
`max(TAT, now) + T`. The decision and the update are one UPDATE statement (the row lock serialises replicas),
and the database clock is the single clock every replica agrees on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True, slots=True)
class Acquired:
    allowed: bool
    wait_s: float


async def ensure(conn: AsyncConnection, schema: str, name: str) -> None:
    await conn.execute(
        text(f"INSERT INTO {schema}.rate_limiter (name, tat) VALUES (:n, now()) ON CONFLICT DO NOTHING"),
        {"n": name},
    )


async def acquire(
    conn: AsyncConnection, schema: str, name: str, rate_per_s: float, burst: float = 1.0
) -> Acquired:
    """Take one token if allowed now; otherwise report how long to wait. The row must exist (`ensure`)."""
    if rate_per_s <= 0:
        raise ValueError("rate_per_s must be positive")
    interval = 1.0 / rate_per_s
    tolerance = max(1.0, burst) * interval
    row = (
        await conn.execute(
            text(
                f"""
                WITH cur AS (
                    SELECT name, greatest(tat, clock_timestamp()) AS t, clock_timestamp() AS now
                    FROM {schema}.rate_limiter WHERE name = :n FOR UPDATE
                ), d AS (
                    SELECT name, t, now,
                           t + make_interval(secs => :interval) - make_interval(secs => :tolerance) AS allow_at
                    FROM cur
                )
                UPDATE {schema}.rate_limiter r
                SET tat = CASE WHEN d.allow_at <= d.now THEN d.t + make_interval(secs => :interval)
                               ELSE r.tat END
                FROM d WHERE r.name = d.name
                RETURNING d.allow_at <= d.now AS allowed,
                          greatest(0, extract(epoch FROM (d.allow_at - d.now)))::float8 AS wait_s
                """
            ),
            {"n": name, "interval": interval, "tolerance": tolerance},
        )
    ).one_or_none()
    if row is None:
        raise LookupError(f"rate limiter {name!r} does not exist")
    return Acquired(bool(row.allowed), float(row.wait_s))


async def pause(
    conn: AsyncConnection, schema: str, name: str, until: datetime, rate_per_s: float, burst: float = 1.0
) -> None:
    """Allow nothing before `until` (a provider's Retry-After); sends resume at the configured rate."""
    interval = 1.0 / rate_per_s
    await conn.execute(
        text(
            f"UPDATE {schema}.rate_limiter SET tat = greatest(tat, CAST(:until AS timestamptz) "
            "+ make_interval(secs => :extra)) WHERE name = :n"
        ),
        {"n": name, "until": until, "extra": (max(1.0, burst) - 1.0) * interval},
    )
