"""The delivery state machine: notice-due -> deliveries row -> provider -> message-sent.

States: `queued` -> `sending` (committed BEFORE the provider call) -> `sent` | `failed`; `queued` ->
`suppressed` (erased / opted out / gate / expired). A row found in `sending` older than
`ARREARS_DISPATCH_IN_DOUBT_AFTER_S` is in doubt and is reconciled with the provider: found -> `sent`, not
found -> `queued` again. So a crash before the provider call never loses a notice (it is resent), and a crash
after the provider accepted never sends twice (it is found).

Workers claim due rows with `FOR UPDATE SKIP LOCKED` (highest priority first), so any number of workers and
replicas share the queue; all of them draw tokens from the one limiter row in Postgres.

`DeliveryEngine` composes the stages, each a module with one job:
  intake (consumer handler) -> claim (due rows, through the `checks` chain run by `chain`, within quota and
  limiter slots) -> send (provider call, failure handling) -> settle (final states, requeues, DLQ) ->
  outcome (`message-sent`, channel `fallback`); reconcile (in-doubt rows); workers (the long-running tasks).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from .. import topics
from ..cloudevents import Envelope
from ..stream.transaction import Transaction
from . import limiter, workers
from .binding import Binding
from .breaker import CircuitBreaker
from .chain import CheckChain
from .channel import Channel, DeliveryRow, Rendered, Route, SendResult
from .checks import HOLD_RECHECK_S, default_checks
from .claim import ClaimBatch, Claimed, Claimer
from .failover import Failover
from .gate import Gate, compliance_gate
from .intake import Intake
from .outcome import Outcomes
from .quota import Quota, next_utc_midnight
from .reconcile import Reconciler
from .routes import FALLBACK, PRIMARY, Routes
from .send import Sender
from .settings import DispatchSettings
from .settle import DeliveryFailed, Settler, mark_invalid

log = logging.getLogger(__name__)

__all__ = [
    "FALLBACK",
    "HOLD_RECHECK_S",
    "PRIMARY",
    "ClaimBatch",
    "Claimed",
    "DeliveryEngine",
    "DeliveryFailed",
    "HostContext",
    "next_utc_midnight",
]


class HostContext(Protocol):
    """The part of `arrears_shared.service.Context` the engine needs."""

    engine: AsyncEngine
    schema: str
    service: str
    stopping: asyncio.Event

    @property
    def relay(self) -> Any: ...


class DeliveryEngine:
    def __init__(self, channel: Channel, settings: DispatchSettings, *, gate: Gate | None = None) -> None:
        self.channel = channel
        self.settings = settings
        self.gate: Gate = gate or compliance_gate()
        self.bound = Binding()
        self.routes = Routes(channel, settings)
        self.quota = Quota(self.bound, self.routes)
        self.settler = Settler(self.bound, settings, Outcomes(self.bound, channel, self.routes))
        self.intake = Intake(self.bound, channel, settings)
        self.checks = CheckChain(default_checks(self.gate), channel, self.settler)
        self.claimer = Claimer(self.bound, self.routes, self.quota, self.checks, self.ensure_limiter)
        self.sender = Sender(self.bound, settings, self.routes, self.quota, self.settler)
        self.reconciler = Reconciler(self.bound, settings, channel, self.settler)
        self.failover = Failover(self.bound, settings, channel.channel, self.routes, self.settler.outcomes)
        self.capacity = workers.Capacity(settings.dispatch_max_in_flight)
        self._limiters_ready = False

    # -- wiring ----------------------------------------------------------------------------------------
    def bind(
        self, engine: AsyncEngine, schema: str, service: str, wake: Callable[[], None] | None = None
    ) -> DeliveryEngine:
        self.bound.bind(engine, schema, service, wake)
        return self

    @property
    def engine(self) -> AsyncEngine:
        return self.bound.engine

    @property
    def fallback(self) -> Route | None:
        return self.routes.fallback

    @property
    def daily_quota(self) -> int | None:
        return self.routes.daily_quota

    @property
    def breakers(self) -> dict[str, CircuitBreaker]:
        return self.routes.breakers

    @property
    def dlq_topic(self) -> str:
        return topics.dlq_topic(topics.NOTICE_DUE, self.settler.dlq_group)

    async def loop(self, ctx: HostContext) -> None:
        """A `ServiceDefinition.loops` entry: send workers + in-doubt reconciliation until stopping."""
        self.bind(ctx.engine, ctx.schema, ctx.service, ctx.relay.wake)
        try:
            await self.run(ctx.stopping)
        finally:
            close = getattr(self.channel, "aclose", None)
            if close is not None:
                await close()

    # -- consumer --------------------------------------------------------------------------------------
    async def handle_batch(self, events: Sequence[Envelope], tx: Transaction) -> None:
        """Consumer handler for `notice-due`, `reply-received` and `message-sent` (see `intake`)."""
        await self.intake.handle_batch(events, tx)

    # -- workers ---------------------------------------------------------------------------------------
    async def run(self, stopping: asyncio.Event) -> None:
        await self.ensure_limiter()
        start = getattr(self.channel, "start", None)
        if start is not None:
            await start()
        s = self.settings
        tasks = [
            asyncio.create_task(
                workers.send_worker(stopping, i, self.process_batch, s.dispatch_idle_poll_s),
                name=f"send-worker-{i}",
            )
            for i in range(s.dispatch_workers)
        ]
        tasks.append(
            asyncio.create_task(
                workers.reconciler(stopping, self.reconcile_in_doubt, s.dispatch_reconcile_interval_s),
                name="in-doubt-reconciler",
            )
        )
        if self.failover.enabled:
            tasks.append(
                asyncio.create_task(
                    workers.reconciler(
                        stopping, self.failover.run_once, s.dispatch_failover_interval_s, "failover"
                    ),
                    name="channel-failover",
                )
            )
        try:
            await stopping.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def ensure_limiter(self) -> None:
        if not self._limiters_ready:
            async with self.engine.begin() as conn:
                await limiter.ensure(conn, self.bound.schema, self.channel.limiter_name)
                if self.fallback is not None:
                    await limiter.ensure(conn, self.bound.schema, self.fallback.limiter_name)
            self._limiters_ready = True

    def choose_route(self, now: datetime | None = None) -> str | None:
        """The route the next send takes: the primary provider while its circuit is closed (or half-open
        with no trial running) and its daily quota lasts, else the fallback route; None = wait."""
        return self.routes.choose(now)

    # -- one batch of deliveries -----------------------------------------------------------------------
    async def process_one(self) -> bool:
        """Claim the most urgent due delivery and take it as far as it goes. False when nothing was due
        (or no route can send now: the notices wait in the queue)."""
        done, _ = await self.process_batch(1)
        return done > 0

    async def process_batch(self, limit: int | None = None) -> tuple[int, float | None]:
        """Claim up to `limit` due deliveries in one transaction, send them concurrently (each at its
        limiter slot) and record the accepted ones in one transaction. Returns (deliveries taken as far
        as they go now, seconds to wait before the limiter has a slot again or None)."""
        want = await self.capacity.take(limit or self.settings.dispatch_batch_size)
        try:
            batch = await self.claim_batch(want)
        finally:
            self.capacity.give(want)
        if not batch.claimed:
            return batch.handled, batch.retry_in_s
        self.capacity.hold(len(batch.claimed))  # given back one by one as the sends finish
        results = await asyncio.gather(
            *(self._send_at_slot(batch.started, c) for c in batch.claimed), return_exceptions=True
        )
        accepted = [
            (c.row, r) for c, r in zip(batch.claimed, results, strict=True) if isinstance(r, SendResult)
        ]
        if accepted:
            # A crash before this commit leaves the rows in `sending`: reconciliation finds them sent.
            await self.settler.sent(accepted)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return len(batch.claimed) + batch.handled, None

    async def _send_at_slot(self, started: float, c: Claimed) -> SendResult | None:
        """Wait for the row's limiter slot, then make the provider call. A send that could no longer start
        well inside the in-doubt window (the process was starved) is not made: the row stays `sending`
        and reconciliation resends it, so no send can still be in flight when a row is reconciled."""
        await asyncio.sleep(max(0.0, started + c.delay_s - time.monotonic()))
        s = self.settings
        slack = max(0.5, (s.dispatch_in_doubt_after_s - s.dispatch_send_timeout_s) / 2)
        try:
            if time.monotonic() > started + c.delay_s + slack:
                log.warning(
                    "send started too late; left for reconciliation",
                    extra={"notice_id": c.row.notice_id, "late_s": time.monotonic() - started - c.delay_s},
                )
                return None
            return await self.sender.attempt(c.row, c.rendered)
        finally:
            self.capacity.give(1)

    async def claim_batch(self, limit: int) -> ClaimBatch:
        """Claim up to `limit` due rows, apply the last-moment checks to each, reserve limiter slots (and
        daily quota) for the ones to send and commit them as `sending`, all in one transaction (see
        `claim`)."""
        return await self.claimer.claim_batch(limit)

    async def claim_for_send(self) -> tuple[DeliveryRow, Rendered] | str | None:
        """Claim one due row, apply the last-moment checks, take a limiter slot, commit `sending` and wait
        for the slot. Returns the row (now `sending`) and its rendered message, "handled" when the row was
        settled without a send (suppressed, deferred, failed to render), or None if nothing is due or no
        route or limiter slot may send now."""
        batch = await self.claim_batch(1)
        if batch.claimed:
            c = batch.claimed[0]
            await asyncio.sleep(max(0.0, batch.started + c.delay_s - time.monotonic()))
            return c.row, c.rendered
        return "handled" if batch.handled else None

    async def attempt(self, row: DeliveryRow, rendered: Rendered) -> SendResult | None:
        """The provider call for a claimed row: the result when the provider accepted (not yet recorded);
        every other outcome is recorded and None returned."""
        return await self.sender.attempt(row, rendered)

    async def send_claimed(self, row: DeliveryRow, rendered: Rendered) -> None:
        """The provider call for a row this worker just moved to `sending`, then its outcome."""
        result = await self.sender.attempt(row, rendered)
        if result is not None:
            await self.settler.sent([(row, result)])

    async def mark_channel_invalid(self, account_id: str, address: str, reason: str) -> None:
        """For signals that arrive later (a DSN bounce, an 'undelivered' status webhook)."""
        async with self.engine.begin() as conn:
            await mark_invalid(conn, self.bound.schema, account_id, self.channel.channel, address, reason)

    def backoff(self, attempts: int) -> float:
        return self.sender.backoff(attempts)

    async def fail_over(self) -> int:
        """Switch queued notices to their fallback channel if every route has been down long enough
        (see `failover`); the engine's failover task calls this periodically."""
        return await self.failover.run_once()

    # -- reconciliation --------------------------------------------------------------------------------
    async def reconcile_in_doubt(self, older_than_s: float | None = None) -> int:
        """Settle every delivery left in `sending` longer than the in-doubt age (see `reconcile`)."""
        return await self.reconciler.reconcile_in_doubt(older_than_s)
