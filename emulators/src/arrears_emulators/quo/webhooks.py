"""Signed webhook delivery with retries and exponential backoff, one task per event.

Two systems, as QUO runs them (see `arrears_emulators.quo.signing` for the documentation pages):

- ``legacy``: ``openphone-signature``, envelope ``{id, object: "event", apiVersion: "v3", createdAt, type,
  data: {object: <message>}}``; message events ``message.received`` and ``message.delivered`` only (a
  failed SMS is not reported by a legacy webhook: only the message's status on lookup tells).
- ``standard``: Standard Webhooks headers; envelope ``{id, apiVersion: "2026-03-30", createdAt, type,
  data: {resource, context, links}}`` (https://www.quo.com/docs/2026-03-30/webhooks-overview); message events
  ``message.received``, ``message.delivered`` and ``message.failed`` (with the carrier error when known).
  ``webhook-id`` is stable across the retries of one delivery; the event ``id`` is stable too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from arrears_emulators.quo.signing import sign_openphone, sign_standard

from ..common.core import WEBHOOK_CONCURRENCY

WebhookSystem = Literal["legacy", "standard"]
LEGACY_EVENTS = frozenset({"message.received", "message.delivered"})
STANDARD_EVENTS = frozenset({"message.received", "message.delivered", "message.failed"})
STANDARD_API_VERSION = "2026-03-30"

log = logging.getLogger(__name__)


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class WebhookSender:
    def __init__(
        self,
        *,
        url: str | None,
        signing_key: str,
        system: WebhookSystem = "legacy",
        secret: str | None = None,
        max_attempts: int,
        initial_backoff_s: float,
        max_backoff_s: float,
        timeout_s: float,
    ) -> None:
        self.url = url
        self.signing_key = signing_key
        self.system: WebhookSystem = system
        self.secret = secret
        self.max_attempts = max_attempts
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # one bounded pool per event type: a customer's message is never queued behind status updates
        self._slots: dict[str, asyncio.Semaphore] = {}
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

    def emit(
        self, event_type: str, message_object: dict[str, Any], context: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Build the event of the configured system and deliver it in the background (if a webhook URL is
        configured). None when that system has no such event (a failure under legacy webhooks)."""
        if self.system == "legacy":
            if event_type not in LEGACY_EVENTS:
                return None
            event: dict[str, Any] = {
                "id": "EV" + secrets.token_hex(16),
                "object": "event",
                "apiVersion": "v3",
                "createdAt": iso_now(),
                "type": event_type,
                "data": {"object": message_object},
            }
        else:
            if event_type not in STANDARD_EVENTS:
                return None
            event = {
                "id": "EV" + secrets.token_hex(16),
                "apiVersion": STANDARD_API_VERSION,
                "createdAt": iso_now(),
                "type": event_type,
                "data": {"resource": message_object, "context": context or {}, "links": {"quo": None}},
            }
        self.events.append(event)
        if self.url:
            self.spawn(self._deliver(event, self.url))
        return event

    def spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, event: dict[str, Any], url: str) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        body = json.dumps(event, separators=(",", ":")).encode()
        backoff = self.initial_backoff_s
        webhook_id = "msg_" + secrets.token_hex(12)  # one delivery: the same id on every retry
        for attempt in range(1, self.max_attempts + 1):
            headers = {"content-type": "application/json"}
            if self.system == "legacy":
                headers["openphone-signature"] = sign_openphone(
                    body, self.signing_key, int(time.time() * 1000)
                )
            else:
                if not self.secret:
                    log.warning("standard webhook system without a secret; not delivering %s", event["id"])
                    return
                headers.update(sign_standard(body, [self.secret], webhook_id, int(time.time())))
            try:
                async with self._slots.setdefault(event["type"], asyncio.Semaphore(WEBHOOK_CONCURRENCY)):
                    response = await self._client.post(url, content=body, headers=headers)
                if 200 <= response.status_code < 300:
                    self.delivered += 1
                    return
                log.info("webhook %s answered %s (attempt %d)", event["id"], response.status_code, attempt)
            except httpx.HTTPError as exc:
                log.info("webhook %s failed: %r (attempt %d)", event["id"], exc, attempt)
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
