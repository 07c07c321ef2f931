"""The engine's long-running tasks: send workers (each takes one batch after another) and the in-doubt
reconciler, and the provider-call capacity of a replica that the workers share."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ..stream.dead_letter import is_infrastructure_error

log = logging.getLogger("arrears_shared.delivery.engine")  # the engine's one logger, whichever stage logs


class Capacity:
    """Provider calls this replica may still start: a worker claims no more rows than that, so a claimed
    row never queues behind other sends (it goes at its limiter slot)."""

    def __init__(self, n: int) -> None:
        self.free = n
        self._freed = asyncio.Event()

    async def take(self, limit: int) -> int:
        """Up to `limit` calls, at least one (waits until one is free)."""
        while self.free <= 0:
            self._freed.clear()
            await self._freed.wait()
        n = min(limit, self.free)
        self.free -= n
        return n

    def hold(self, n: int) -> None:
        """Take `n` calls without waiting (the rows they are for were just claimed)."""
        self.free -= n

    def give(self, n: int) -> None:
        self.free += n
        self._freed.set()


async def send_worker(
    stopping: asyncio.Event,
    n: int,
    process_batch: Callable[[], Awaitable[tuple[int, float | None]]],
    idle_poll_s: float,
) -> None:
    """Batch after batch until stopping; sleeps when nothing was due (or until the limiter has a slot)."""
    failures = 0
    while not stopping.is_set():
        try:
            done, retry_in = await process_batch()
            failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as e:
            failures += 1
            level = logging.WARNING if is_infrastructure_error(e) else logging.ERROR
            log.log(
                level,
                "send worker error",
                exc_info=level == logging.ERROR,
                extra={"worker": n, "error": f"{type(e).__name__}: {e}"[:300]},
            )
            await sleep(stopping, min(30.0, 0.5 * 2 ** min(failures, 6)))
            continue
        if not done:
            await sleep(stopping, retry_in if retry_in is not None else idle_poll_s)


async def reconciler(
    stopping: asyncio.Event,
    reconcile: Callable[[], Awaitable[int]],
    interval_s: float,
    what: str = "reconciliation",
) -> None:
    """`reconcile` every `interval_s` until stopping (also runs the channel-failover pass, `what` = "failover")."""
    while not stopping.is_set():
        try:
            await reconcile()
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning(f"{what} pass failed", extra={"error": f"{type(e).__name__}: {e}"[:300]})
        await sleep(stopping, interval_s)


async def sleep(stopping: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if stopping."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
