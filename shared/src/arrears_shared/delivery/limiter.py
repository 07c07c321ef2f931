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


@dataclass(frozen=True, slots=True)
class Reserved:
    """Tokens reserved ahead of time: `delays[i]` is how long after the reservation the i-th send may go.
    Empty when nothing can be reserved within the horizon; `ahead_s` then says how far the limiter's
    schedule already runs ahead of now (a Retry-After pause shows as a large value)."""

    delays: tuple[float, ...]
    ahead_s: float


def _tokens_within(ahead_s: float, interval: float, tolerance: float, horizon_s: float) -> int:
    return max(0, int((horizon_s + tolerance - ahead_s) / interval + 1e-9))


def _delays(ahead_s: float, interval: float, tolerance: float, n: int) -> tuple[float, ...]:
    return tuple(max(0.0, ahead_s + (i + 1) * interval - tolerance) for i in range(n))


async def available(
    conn: AsyncConnection,
    schema: str,
    name: str,
    rate_per_s: float,
    burst: float = 1.0,
    horizon_s: float = 1.0,
) -> tuple[int, float]:
    """(tokens that could be reserved now within `horizon_s`, seconds the schedule runs ahead of now).
    A plain read without a lock: an estimate for sizing a claim, never a grant."""
    interval = 1.0 / rate_per_s
    tolerance = max(1.0, burst) * interval
    ahead = (
        await conn.execute(
            text(
                "SELECT greatest(0, extract(epoch FROM (tat - clock_timestamp())))::float8"
                f" FROM {schema}.rate_limiter WHERE name = :n"
            ),
            {"n": name},
        )
    ).scalar_one_or_none()
    if ahead is None:
        raise LookupError(f"rate limiter {name!r} does not exist")
    return _tokens_within(float(ahead), interval, tolerance, horizon_s), float(ahead)


async def reserve(
    conn: AsyncConnection,
    schema: str,
    name: str,
    rate_per_s: float,
    burst: float,
    n: int,
    horizon_s: float = 1.0,
) -> Reserved:
    """Reserve up to `n` GCRA slots whose send time lies within `horizon_s` from now, in one statement.

    Same arithmetic as `acquire` applied n times: slot i (0-based) may go at `max(TAT, now) + (i+1)*T - b*T`;
    TAT moves by T per granted slot. The caller waits until each slot before its send, so the provider
    sees the configured rate (with the configured burst) and no slot is lost to polling."""
    if rate_per_s <= 0:
        raise ValueError("rate_per_s must be positive")
    interval = 1.0 / rate_per_s
    tolerance = max(1.0, burst) * interval
    row = (
        await conn.execute(
            text(
                f"""
                WITH cur AS (
                    SELECT name, greatest(tat, c.now) AS t, c.now
                    FROM {schema}.rate_limiter, (SELECT clock_timestamp() AS now) c
                    WHERE name = :n FOR UPDATE OF rate_limiter
                ), g AS (
                    SELECT name, t, now, least(:want, greatest(0, floor(
                        (extract(epoch FROM (now - t)) + :horizon + :tolerance) / :interval + 1e-9
                    )))::int AS granted
                    FROM cur
                )
                UPDATE {schema}.rate_limiter r
                SET tat = g.t + make_interval(secs => g.granted * :interval)
                FROM g WHERE r.name = g.name
                RETURNING g.granted, extract(epoch FROM (g.t - g.now))::float8 AS ahead
                """
            ),
            {
                "n": name,
                "want": max(0, n),
                "horizon": horizon_s,
                "tolerance": tolerance,
                "interval": interval,
            },
        )
    ).one_or_none()
    if row is None:
        raise LookupError(f"rate limiter {name!r} does not exist")
    ahead = float(row.ahead)
    return Reserved(_delays(ahead, interval, tolerance, int(row.granted)), ahead)
