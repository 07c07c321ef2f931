"""Background webhook delivery with retries, as the providers' own senders do it: one task per event, a
bounded pool of concurrent posts, doubling delays between attempts, a give-up after `max_attempts`.

Each provider's sender subclasses `WebhookDelivery` and says only how a body is signed (`headers`) and, when
it differs, which answers count as accepted and which pool an event waits in. `events` records what was
emitted, `attempts` each try and its outcome; `stats()` is merged into the emulator's control stats.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import Any

import httpx

from .core import WEBHOOK_CONCURRENCY

log = logging.getLogger(__name__)


class WebhookDelivery:
    def __init__(
        self,
        *,
        url: str | None,
        max_attempts: int,
        initial_backoff_s: float,
        max_backoff_s: float,
        timeout_s: float,
    ) -> None:
        self.url = url
        self.max_attempts = max_attempts
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots: dict[str, asyncio.Semaphore] = {}
        self.delivered = 0
        self.failed_attempts = 0
        self.given_up = 0
        self.events: list[dict[str, Any]] = []
        self.attempts: list[dict[str, Any]] = []

    # -- what a provider says ------------------------------------------------------------------------------
    def headers(self, body: bytes, delivery_id: str) -> dict[str, str] | None:
        """Headers of one attempt (signed afresh each time); None: this delivery cannot be sent."""
        raise NotImplementedError

    def accepted(self, status: int) -> bool:
        return 200 <= status < 300

    def pool(self, event: dict[str, Any]) -> str:
        """The concurrency pool an event's posts wait in (one for all unless a provider separates them)."""
        return ""

    # -- the delivery loop ---------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {
            "webhooks_delivered": self.delivered,
            "webhooks_failed_attempts": self.failed_attempts,
            "webhooks_given_up": self.given_up,
            "webhooks_pending": len(self._tasks),
        }

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        return self._client

    def send(self, event: dict[str, Any]) -> None:
        """Record the event and deliver it in the background (when an endpoint URL is set)."""
        self.events.append(event)
        if self.url:
            self.spawn(self._deliver(event, self.url))

    def spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, event: dict[str, Any], url: str) -> None:
        body = json.dumps(event, separators=(",", ":")).encode()
        label = event.get("id") or event.get("type") or "notification"
        delivery_id = "msg_" + secrets.token_hex(12)  # one delivery: the same id on every retry
        backoff = self.initial_backoff_s
        slots = self._slots.setdefault(self.pool(event), asyncio.Semaphore(WEBHOOK_CONCURRENCY))
        for attempt in range(1, self.max_attempts + 1):
            headers = self.headers(body, delivery_id)
            if headers is None:
                log.warning("webhook %s cannot be signed; not delivered", label)
                return
            outcome: int | str
            try:
                async with slots:
                    response = await self.client.post(url, content=body, headers=headers)
                outcome = response.status_code
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            self.attempts.append(
                {
                    "event_id": event.get("id"),
                    "type": event.get("type"),
                    "attempt": attempt,
                    "outcome": outcome,
                }
            )
            if isinstance(outcome, int) and self.accepted(outcome):
                self.delivered += 1
                return
            log.info("webhook %s answered %s (attempt %d)", label, outcome, attempt)
            self.failed_attempts += 1
            if attempt < self.max_attempts:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
        self.given_up += 1

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    async def reset(self) -> None:
        await self.cancel_all()
        self.delivered = self.failed_attempts = self.given_up = 0
        self.events.clear()
        self.attempts.clear()

    async def aclose(self) -> None:
        await self.cancel_all()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
