"""Signed webhook delivery as Stripe does it, with retries.

Every event is a ``POST`` of the Event object (``{"id": "evt_…", "object": "event", "type", "created",
"data": {"object": {…}}, …}``) with ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``
(https://docs.stripe.com/webhooks#verify-manually) — the secret is the whole ``whsec_…`` string, as the
``stripe`` library uses it. A delivery not answered 2xx (or not answered) is retried with doubling delays;
Stripe retries for up to three days, here ``max_attempts`` times. Every retry is signed afresh (a new ``t``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from ..common.webhooks import WebhookDelivery

SIGNATURE_HEADER = "Stripe-Signature"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Stripe-Signature`` value of `body` at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


class WebhookSender(WebhookDelivery):
    def __init__(self, *, secret: str, **delivery: Any) -> None:
        super().__init__(**delivery)
        self.secret = secret

    def headers(self, body: bytes, delivery_id: str) -> dict[str, str]:
        return {
            "content-type": "application/json; charset=utf-8",
            SIGNATURE_HEADER: sign(self.secret, body, int(time.time())),
        }

    def emit(self, event: dict[str, Any]) -> None:
        """Record the event and deliver it in the background (when an endpoint URL is set)."""
        self.send(event)
