"""The provider call of a claimed row, on its route, through the route's circuit breaker, and what each
classified failure means: rate limits and used-up quotas pause the shared limiter (and requeue without
counting the attempt), transient errors retry with backoff until the last attempt dead-letters the notice,
a permanent rejection fails it (and marks the address invalid), an in-doubt send is left for reconciliation."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import telemetry as m
from ..events import DeliveryStatus
from ..providers.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderInDoubt,
    ProviderPermanentError,
    ProviderQuotaExhausted,
    ProviderRateLimited,
    ProviderTransientError,
)
from ..stream.backoff import backoff
from . import limiter
from .binding import Binding
from .breaker import CircuitBreaker
from .channel import DeliveryRow, Rendered, SendResult
from .quota import Quota
from .routes import FALLBACK, PRIMARY, Routes
from .settings import DispatchSettings
from .settle import Settler

log = logging.getLogger("arrears_shared.delivery.engine")  # the engine's one logger, whichever stage logs

# (row, error, route, the route's sender, its breaker) -> the failure recorded
OnFailure = Callable[[DeliveryRow, Any, str, Any, CircuitBreaker], Awaitable[None]]


class Sender:
    def __init__(
        self, bound: Binding, settings: DispatchSettings, routes: Routes, quota: Quota, settle: Settler
    ) -> None:
        self.bound = bound
        self.settings = settings
        self.routes = routes
        self.quota = quota
        self.settle = settle
        # In order, the first match applies: (errors, `outcome` label of the provider-seconds metric, handler).
        self.on_failure: tuple[
            tuple[type[BaseException] | tuple[type[BaseException], ...], str, OnFailure], ...
        ] = (
            (ProviderQuotaExhausted, "quota", self._quota_exhausted),
            (ProviderRateLimited, "rate_limited", self._rate_limited),
            (ProviderAuthError, "auth", self._auth),
            (ProviderTransientError, "transient", self._transient),
            (ProviderPermanentError, "permanent", self._permanent),
            ((ProviderInDoubt, TimeoutError), "in_doubt", self._in_doubt),
            (ProviderError, "error", self._transient),
            (Exception, "error", self._unclassified),
        )

    def backoff(self, attempts: int) -> float:
        s = self.settings
        return backoff(attempts, s.dispatch_backoff_base_s, s.dispatch_backoff_max_s)

    async def attempt(self, row: DeliveryRow, rendered: Rendered) -> SendResult | None:
        """The provider call. Returns the result when the provider accepted the message (the caller records
        it); every other outcome is recorded here and None returned."""
        route = row.route or PRIMARY
        sender = self.routes.sender(route)
        breaker = self.routes.breakers[route]
        breaker.allow()  # takes the half-open trial slot when the circuit is half-open
        if route == FALLBACK:
            m.DELIVERY_FALLBACKS.labels(self.bound.service, sender.provider).inc()
        started = time.perf_counter()
        outcome = "ok"
        try:
            result: SendResult = await asyncio.wait_for(
                sender.send(row, rendered), timeout=self.settings.dispatch_send_timeout_s
            )
        except Exception as e:
            for errors, label, handle in self.on_failure:
                if isinstance(e, errors):
                    outcome = label
                    await handle(row, e, route, sender, breaker)
                    break
            return None
        finally:
            m.PROVIDER_SECONDS.labels(self.bound.service, sender.provider, "send", outcome).observe(
                time.perf_counter() - started
            )
        breaker.success()
        return result

    async def _quota_exhausted(
        self, row: DeliveryRow, e: ProviderQuotaExhausted, route: str, sender: Any, breaker: CircuitBreaker
    ) -> None:
        # e.g. Gmail's 429 "(Mail sending)": the mailbox is paused until the time Gmail names, for every
        # replica (route_pauses); meanwhile the step goes by the fallback route (SMTP relay) if any.
        breaker.release()
        if route == PRIMARY:
            routes = self.routes
            routes.quota_exhausted_until = datetime.now(UTC) + timedelta(seconds=e.retry_after_s)
            async with self.bound.tx() as tx:
                await self.quota.pause(tx, routes.quota_exhausted_until, e.message)
            log.warning(
                "provider quota used up; primary route paused",
                extra={"until": routes.quota_exhausted_until.isoformat(), "error": e.message[:200]},
            )
        await self._requeue_rate_limited(row, e, route)

    async def _rate_limited(
        self, row: DeliveryRow, e: ProviderRateLimited, route: str, sender: Any, breaker: CircuitBreaker
    ) -> None:
        breaker.release()
        await self._requeue_rate_limited(row, e, route)

    async def _requeue_rate_limited(self, row: DeliveryRow, e: ProviderRateLimited, route: str) -> None:
        until = datetime.now(UTC) + timedelta(seconds=max(e.retry_after_s, 0.1))
        name, rate, burst = self.routes.params(route)
        async with self.bound.tx() as tx:
            await limiter.pause(tx.conn, self.bound.schema, name, until, rate, burst)
            # Nothing was sent: back to the queue without counting the attempt.
            await self.settle.requeue(
                tx,
                row,
                until
                if not isinstance(e, ProviderQuotaExhausted) or self.routes.fallback is None
                else datetime.now(UTC),
                f"rate_limited: retry after {e.retry_after_s:.1f}s",
                attempts=row.attempts - 1,
                guard_attempts=row.attempts,
            )
        log.info(
            "provider rate limited; limiter paused",
            extra={"notice_id": row.notice_id, "retry_after_s": e.retry_after_s, "route": route},
        )

    async def _auth(
        self, row: DeliveryRow, e: ProviderAuthError, route: str, sender: Any, breaker: CircuitBreaker
    ) -> None:
        # Credentials are a configuration problem, not a problem of this notice: retry like an outage.
        breaker.failure()
        log.error("provider rejected our credentials", extra={"provider": sender.provider})
        await self._retry(row, e)

    async def _transient(
        self, row: DeliveryRow, e: ProviderError, route: str, sender: Any, breaker: CircuitBreaker
    ) -> None:
        # A failed half-open trial says the provider is still down, nothing about this notice: it waits again
        # without using an attempt (a long outage must not dead-letter the notices that trial it).
        trial = breaker.trial_running
        breaker.failure()
        await self._retry(row, e, count=not trial)

    async def _retry(self, row: DeliveryRow, e: ProviderError, *, count: bool = True) -> None:
        reason = f"{type(e).__name__}: {e.message}"[:500]
        async with self.bound.tx() as tx:
            if count and row.attempts >= self.settings.dispatch_max_attempts:
                await self.settle.fail_and_dead_letter(
                    tx, row, f"gave up after {row.attempts} attempts: {reason}", guard_attempts=row.attempts
                )
                return
            await self.settle.requeue(
                tx,
                row,
                datetime.now(UTC) + timedelta(seconds=self.backoff(row.attempts)),
                reason if count else f"circuit trial failed: {reason}"[:500],
                attempts=row.attempts if count else row.attempts - 1,
                guard_attempts=row.attempts,
            )
        log.warning(
            "transient provider error; will retry",
            extra={"notice_id": row.notice_id, "attempts": row.attempts, "error": reason},
        )

    async def _permanent(
        self, row: DeliveryRow, e: ProviderPermanentError, route: str, sender: Any, breaker: CircuitBreaker
    ) -> None:
        breaker.success()
        async with self.bound.tx() as tx:
            await self.settle.mark_invalid(tx, row, e.reason)
            await self.settle.settle(
                tx,
                row,
                DeliveryStatus.FAILED,
                reason=e.reason[:500],
                permanent=True,
                guard_attempts=row.attempts,
            )

    async def _in_doubt(
        self, row: DeliveryRow, e: BaseException, route: str, sender: Any, breaker: CircuitBreaker
    ) -> None:
        breaker.failure()
        await self._leave_in_doubt(row, e)

    async def _unclassified(
        self, row: DeliveryRow, e: BaseException, route: str, sender: Any, breaker: CircuitBreaker
    ) -> None:
        # Unclassified: we cannot know whether the provider took it. Reconcile before any resend.
        breaker.failure()
        log.exception(
            "unclassified provider error; treating the send as in doubt",
            extra={"notice_id": row.notice_id},
        )
        await self._leave_in_doubt(row, e)

    async def _leave_in_doubt(self, row: DeliveryRow, e: BaseException) -> None:
        await self.settle.in_doubt(row, f"in doubt: {type(e).__name__}: {e}"[:500])
        log.warning("send in doubt; left for reconciliation", extra={"notice_id": row.notice_id})
