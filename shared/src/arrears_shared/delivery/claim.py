"""Claiming due deliveries: up to `limit` due rows (most urgent first, `FOR UPDATE SKIP LOCKED`), through
the check chain, within the daily quota and the limiter's slots, committed as `sending` in one transaction.

`updated_at` of a claimed row is its limiter slot: when its send may begin, which bounds the in-doubt window.
The batch is sized by the limiter first (a plain read), so a slow provider account claims one or two rows
at a time and a fast one up to `limit`. Rows left over (no slot, no quota, a second notice to an account
already in the batch) are left queued, untouched."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from sqlalchemy import text

from ..stream.transaction import Transaction
from ..vault.keys import vault
from . import limiter
from .binding import Binding
from .chain import CheckChain
from .channel import DeliveryRow, Rendered
from .quota import Quota
from .routes import FALLBACK, PRIMARY, Routes
from .rows import COLUMNS, to_row
from .sealing import seal_rendered

log = logging.getLogger("arrears_shared.delivery.engine")  # the engine's one logger, whichever stage logs

# Limiter slots are reserved at most this far ahead: a claimed row waits at most this long for its slot.
HORIZON_S = 1.0

Sendable = list[tuple[DeliveryRow, Rendered]]


@dataclass(frozen=True, slots=True)
class Claimed:
    row: DeliveryRow  # now `sending`
    rendered: Rendered
    delay_s: float  # from the reservation until the row's limiter slot


@dataclass(slots=True)
class ClaimBatch:
    claimed: list[Claimed] = field(default_factory=list)
    handled: int = 0  # rows settled or deferred without a send
    retry_in_s: float | None = None  # no limiter slot within the horizon: look again after this
    started: float = 0.0  # time.monotonic() of the reservation (the delays count from it)


def retry_in(ahead_s: float, rate: float, burst: float) -> float:
    """Seconds until a limiter whose schedule runs `ahead_s` ahead has a slot within the horizon again."""
    interval = 1.0 / rate
    return min(5.0, max(0.005, ahead_s + interval - max(1.0, burst) * interval - HORIZON_S))


class Claimer:
    def __init__(
        self,
        bound: Binding,
        routes: Routes,
        quota: Quota,
        checks: CheckChain,
        ensure_limiter: Callable[[], Awaitable[None]],
    ) -> None:
        self.bound = bound
        self.routes = routes
        self.quota = quota
        self.checks = checks
        self.ensure_limiter = ensure_limiter

    async def claim_batch(self, limit: int) -> ClaimBatch:
        await self.ensure_limiter()
        route = self.routes.choose()
        if route is None:
            return ClaimBatch()
        if self.routes.breakers[route].state != "closed":
            limit = 1  # a half-open circuit lets exactly one trial send through
        batch = ClaimBatch()
        async with self.bound.tx() as tx:
            taken = await self._claim(tx, route, limit, batch)
        if taken is not None:
            route, sendable, delays = taken
            for (row, rendered), delay in zip(sendable, delays, strict=False):
                sending = replace(
                    row, state="sending", attempts=row.attempts + 1, rendered=rendered, route=route
                )
                batch.claimed.append(Claimed(sending, rendered, delay))
        return batch

    async def _claim(
        self, tx: Transaction, route: str | None, limit: int, batch: ClaimBatch
    ) -> tuple[str, Sendable, Sequence[float]] | None:
        """The route, the rows committed `sending` and their slot delays; None when none are."""
        route = await self._unpaused(tx, route)
        if route is None:
            return None
        name, rate, burst = self.routes.params(route)
        tokens, ahead = await limiter.available(tx.conn, self.bound.schema, name, rate, burst, HORIZON_S)
        if tokens == 0:
            batch.retry_in_s = retry_in(ahead, rate, burst)
            return None
        rows = await self._due(tx, max(1, min(limit, tokens)))
        if not rows:
            return None
        checked = await self.checks(tx, self.bound.schema, rows)
        batch.handled += checked.handled
        now = datetime.now(UTC)
        route, sendable, quota_used = await self._within_quota(tx, route, checked.sendable, now)
        if route is None or not sendable:
            return None
        return await self._reserve(tx, route, sendable, quota_used, now, batch)

    async def _unpaused(self, tx: Transaction, route: str | None) -> str | None:
        """Another replica may have been told the quota is used up: take the fallback route too."""
        if route == PRIMARY and self.routes.daily_quota is not None:
            paused = await self.quota.paused_until(tx, datetime.now(UTC))
            if paused is not None:
                self.routes.quota_exhausted_until = paused
                return self.routes.choose()
        return route

    async def _due(self, tx: Transaction, n: int) -> list[DeliveryRow]:
        """The due rows, opened with one `for_reading` of their accounts (an erased one's are flagged)."""
        found = (
            await tx.conn.execute(
                text(
                    f"SELECT {COLUMNS} FROM {self.bound.schema}.deliveries WHERE state = 'queued' AND next_attempt_at <= now()"
                    " ORDER BY priority DESC, next_attempt_at LIMIT :n FOR UPDATE SKIP LOCKED"
                ),
                {"n": n},
            )
        ).all()
        if not found:
            return []
        keys = await vault().for_reading(tx.conn, {r.account_id for r in found})
        return [to_row(r, keys) for r in found]

    async def _within_quota(
        self, tx: Transaction, route: str, sendable: Sendable, now: datetime
    ) -> tuple[str | None, Sendable, int]:
        """The primary route's daily quota: the route and the rows it takes now, and the quota taken. With
        the quota used up, one row goes by the fallback route (if usable) or all stay queued (None)."""
        if not sendable or route != PRIMARY or self.routes.daily_quota is None:
            return route, sendable, 0
        paused = await self.quota.paused_until(tx, now)
        used = 0 if paused is not None else await self.quota.use(tx, now, len(sendable))
        if paused is None and used < len(sendable):
            paused = await self.quota.frees_at(tx, now)
            log.warning(
                "daily quota used up (rolling 24 h); primary route paused",
                extra={"quota": self.routes.daily_quota, "until": paused.isoformat()},
            )
        if paused is not None:
            self.routes.quota_exhausted_until = paused
        if used:
            return route, sendable[:used], used
        if not self.routes.fallback_usable():
            return None, [], 0  # the rows stay queued, unchanged
        return FALLBACK, sendable[:1], 0

    async def _reserve(
        self,
        tx: Transaction,
        route: str,
        sendable: Sendable,
        quota_used: int,
        now: datetime,
        batch: ClaimBatch,
    ) -> tuple[str, Sendable, Sequence[float]] | None:
        """Limiter slots for the rows (quota not used for lack of a slot is given back), then `sending`."""
        name, rate, burst = self.routes.params(route)
        s = self.bound.schema
        reserved = await limiter.reserve(tx.conn, s, name, rate, burst, len(sendable), HORIZON_S)
        batch.started = time.monotonic()
        granted = len(reserved.delays)
        if quota_used > granted:
            await self.quota.unuse(tx, now, quota_used - granted)
        if granted == 0:
            batch.retry_in_s = retry_in(reserved.ahead_s, rate, burst)
            return None
        sendable = sendable[:granted]
        # the rendered message is stored sealed (a resend reuses it); the plaintext is what is sent now
        keys = await vault().for_writing(tx.conn, {row.account_id for row, _ in sendable})
        await tx.conn.execute(
            text(
                f"UPDATE {s}.deliveries d SET state = 'sending', attempts = d.attempts + 1, route = :route,"
                " rendered = x.rendered, updated_at = clock_timestamp() + make_interval(secs => x.delay)"
                " FROM jsonb_to_recordset(CAST(:js AS jsonb)) AS x(notice_id text, rendered jsonb,"
                " delay float8) WHERE d.notice_id = x.notice_id"
            ),
            {
                "route": route,
                "js": json.dumps(
                    [
                        {
                            "notice_id": row.notice_id,
                            "rendered": seal_rendered(keys[row.account_id], row.account_id, rendered),
                            "delay": delay,
                        }
                        for (row, rendered), delay in zip(sendable, reserved.delays, strict=False)
                    ]
                ),
            },
        )
        return route, sendable, reserved.delays
