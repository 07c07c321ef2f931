"""The primary route's daily quota, shared by every replica: sends counted over a rolling 24 hours (as Gmail
counts its sending limit) in per-minute buckets (`quota_window`), and the route pause a provider asks for
when it says its quota is used up (`route_pauses`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import text

from ..stream.transaction import Transaction
from .binding import Binding
from .routes import Routes


def next_utc_midnight(now: datetime) -> datetime:
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


class Quota:
    def __init__(self, bound: Binding, routes: Routes) -> None:
        self.bound = bound
        self.routes = routes  # its `daily_quota`: sends per rolling 24 hours; None = no quota
        self.channel = routes.channel

    async def use(self, tx: Transaction, now: datetime, n: int) -> int:
        """Take up to `n` sends of the daily quota; returns how many."""
        s = self.bound.schema
        name = self.channel.limiter_name
        await tx.conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"{s}.quota:{name}"})
        used = (
            await tx.conn.execute(
                text(
                    f"SELECT coalesce(sum(used), 0) FROM {s}.quota_window WHERE name = :n"
                    " AND bucket > CAST(:now AS timestamptz) - interval '24 hours'"
                ),
                {"n": name, "now": now},
            )
        ).scalar_one()
        granted = max(0, min(n, int(self.routes.daily_quota or 0) - int(used)))
        if granted:
            await tx.conn.execute(
                text(
                    f"INSERT INTO {s}.quota_window (name, bucket, used) VALUES (:n,"
                    " date_trunc('minute', CAST(:now AS timestamptz)), :k) ON CONFLICT (name, bucket) DO UPDATE"
                    f" SET used = {s}.quota_window.used + EXCLUDED.used"
                ),
                {"n": name, "now": now, "k": granted},
            )
            await tx.conn.execute(
                text(
                    f"DELETE FROM {s}.quota_window WHERE name = :n"
                    " AND bucket < CAST(:now AS timestamptz) - interval '25 hours'"
                ),
                {"n": name, "now": now},
            )
        return granted

    async def unuse(self, tx: Transaction, now: datetime, n: int = 1) -> None:
        """Give back `n` sends taken at `now` that were not made."""
        await tx.conn.execute(
            text(
                f"UPDATE {self.bound.schema}.quota_window SET used = greatest(0, used - :k) WHERE name = :n"
                " AND bucket = date_trunc('minute', CAST(:now AS timestamptz))"
            ),
            {"n": self.channel.limiter_name, "now": now, "k": n},
        )

    async def frees_at(self, tx: Transaction, now: datetime) -> datetime:
        """When the oldest send of the rolling window leaves it (a slot of the quota frees)."""
        oldest = (
            await tx.conn.execute(
                text(
                    f"SELECT min(bucket) FROM {self.bound.schema}.quota_window WHERE name = :n AND used > 0"
                    " AND bucket > CAST(:now AS timestamptz) - interval '24 hours'"
                ),
                {"n": self.channel.limiter_name, "now": now},
            )
        ).scalar_one()
        if oldest is None:
            return now + timedelta(minutes=1)
        return max(now + timedelta(seconds=1), oldest + timedelta(hours=24, minutes=1))

    async def paused_until(self, tx: Transaction, now: datetime) -> datetime | None:
        """The primary route's pause (the provider said its quota is used up until then), all replicas."""
        until = (
            await tx.conn.execute(
                text(f"SELECT until FROM {self.bound.schema}.route_pauses WHERE name = :n AND until > :now"),
                {"n": self.channel.limiter_name, "now": now},
            )
        ).scalar_one_or_none()
        return until  # type: ignore[no-any-return]

    async def pause(self, tx: Transaction, until: datetime, reason: str) -> None:
        await tx.conn.execute(
            text(
                f"INSERT INTO {self.bound.schema}.route_pauses (name, until, reason) VALUES (:n, :u, :r)"
                " ON CONFLICT (name) DO UPDATE SET until = EXCLUDED.until, reason = EXCLUDED.reason"
            ),
            {"n": self.channel.limiter_name, "u": until, "r": reason[:300]},
        )
