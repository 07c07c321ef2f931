"""Signed webhook delivery as Meta does it for the WhatsApp Cloud API, with retries.

Every notification is a ``POST`` of ``{"object": "whatsapp_business_account", "entry": [{"id": <WABA id>,
"changes": [{"field": "messages", "value": {...}}]}]}`` with ``X-Hub-Signature-256: sha256=<hex>``, the
HMAC-SHA256 of the raw body keyed with the app secret
(https://developers.facebook.com/docs/graph-api/webhooks/getting-started#validate-payloads). A delivery that
is not answered 200 is retried with growing delays (Meta retries for up to 7 days; here a few attempts).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from typing import Any

import httpx

from ..common.core import WEBHOOK_CONCURRENCY

SIGNATURE_HEADER = "X-Hub-Signature-256"

log = logging.getLogger(__name__)


def sign(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value of `body`."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    def __init__(
        self,
        *,
        url: str | None,
        app_secret: str,
        max_attempts: int,
        initial_backoff_s: float,
        max_backoff_s: float,
        timeout_s: float,
    ) -> None:
        self.url = url
        self.app_secret = app_secret
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

    def emit(self, payload: dict[str, Any]) -> None:
        """Record the notification and deliver it in the background (when a callback URL is set)."""
        self.events.append(payload)
        if self.url:
            self.spawn(self._deliver(payload, self.url))

    def spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, payload: dict[str, Any], url: str) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(self.app_secret, body)}
        backoff = self.initial_backoff_s
        for attempt in range(1, self.max_attempts + 1):
            try:
                async with self._slots:
                    response = await self.client.post(url, content=body, headers=headers)
                if response.status_code == 200:
                    self.delivered += 1
                    return
                log.info("webhook answered %s (attempt %d)", response.status_code, attempt)
            except httpx.HTTPError as exc:
                log.info("webhook failed: %r (attempt %d)", exc, attempt)
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

    async def aclose(self) -> None:
        await self.cancel_all()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
