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

import secrets
import time
from datetime import UTC, datetime
from typing import Any, Literal

from arrears_emulators.quo.signing import sign_openphone, sign_standard

from ..common.webhooks import WebhookDelivery

WebhookSystem = Literal["legacy", "standard"]
LEGACY_EVENTS = frozenset({"message.received", "message.delivered"})
STANDARD_EVENTS = frozenset({"message.received", "message.delivered", "message.failed"})
STANDARD_API_VERSION = "2026-03-30"


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class WebhookSender(WebhookDelivery):
    def __init__(
        self,
        *,
        signing_key: str,
        system: WebhookSystem = "legacy",
        secret: str | None = None,
        **delivery: Any,
    ) -> None:
        super().__init__(**delivery)
        self.signing_key = signing_key
        self.system: WebhookSystem = system
        self.secret = secret

    def pool(self, event: dict[str, Any]) -> str:
        # one bounded pool per event type: a customer's message is never queued behind status updates
        return str(event["type"])

    def headers(self, body: bytes, delivery_id: str) -> dict[str, str] | None:
        headers = {"content-type": "application/json"}
        if self.system == "legacy":
            headers["openphone-signature"] = sign_openphone(body, self.signing_key, int(time.time() * 1000))
            return headers
        if not self.secret:
            return None  # the standard system signs with the endpoint's secret: none, no delivery
        headers.update(sign_standard(body, [self.secret], delivery_id, int(time.time())))
        return headers

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
        self.send(event)
        return event
