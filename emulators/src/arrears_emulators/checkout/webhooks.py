"""Signed webhook delivery as Stripe does it, with retries.

Every event is a ``POST`` of the Event object (``{"id": "evt_…", "object": "event", "type", "created",
"data": {"object": {…}}, …}``) with ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``
(https://docs.stripe.com/webhooks#verify-manually) — the secret is the whole ``whsec_…`` string, as the
``stripe`` library uses it. A delivery not answered 2xx (or not answered) is retried with doubling delays;
Stripe retries for up to three days, here ``max_attempts`` times. Every retry is signed afresh (a new ``t``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import httpx

from ..common.core import WEBHOOK_CONCURRENCY

SIGNATURE_HEADER = "Stripe-Signature"

log = logging.getLogger(__name__)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Stripe-Signature`` value of `body` at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class WebhookSender:
    def __init__(
        self,
        *,
        url: str | None,
        secret: str,
        max_attempts: int,
        initial_backoff_s: float,
        max_backoff_s: float,
        timeout_s: float,
    ) -> None:
        self.url = url
        self.secret = secret
        self.max_attempts = max_attempts
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(WEBHOOK_CONCURRENCY)
        self.delivered = 0
        self.failed_attempts = 0
        self.given_up = 0
        self.attempts: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

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

    def emit(self, event: dict[str, Any]) -> None:
        """Record the event and deliver it in the background (when an endpoint URL is set)."""
        self.events.append(event)
        if self.url:
            task = asyncio.get_running_loop().create_task(self._deliver(event, self.url))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, event: dict[str, Any], url: str) -> None:
        body = json.dumps(event, separators=(",", ":")).encode()
        backoff = self.initial_backoff_s
        for attempt in range(1, self.max_attempts + 1):
            headers = {
                "content-type": "application/json; charset=utf-8",
                SIGNATURE_HEADER: sign(self.secret, body, int(time.time())),
            }
            outcome: int | str
            try:
                async with self._slots:
                    response = await self.client.post(url, content=body, headers=headers)
                outcome = response.status_code
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            self.attempts.append(
                {"event_id": event["id"], "type": event["type"], "attempt": attempt, "outcome": outcome}
            )
            if isinstance(outcome, int) and 200 <= outcome < 300:
                self.delivered += 1
                return
            log.info("webhook %s answered %s (attempt %d)", event["id"], outcome, attempt)
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
        self.attempts.clear()
        self.events.clear()

    async def aclose(self) -> None:
        await self.cancel_all()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
