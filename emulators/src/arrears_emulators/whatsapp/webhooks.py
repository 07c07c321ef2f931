"""Signed webhook delivery as Meta does it for the WhatsApp Cloud API, with retries.

Every notification is a ``POST`` of ``{"object": "whatsapp_business_account", "entry": [{"id": <WABA id>,
"changes": [{"field": "messages", "value": {...}}]}]}`` with ``X-Hub-Signature-256: sha256=<hex>``, the
HMAC-SHA256 of the raw body keyed with the app secret
(https://developers.facebook.com/docs/graph-api/webhooks/getting-started#validate-payloads). A delivery that
is not answered 200 is retried with growing delays (Meta retries for up to 7 days; here a few attempts).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from ..common.webhooks import WebhookDelivery

SIGNATURE_HEADER = "X-Hub-Signature-256"


def sign(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value of `body`."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender(WebhookDelivery):
    def __init__(self, *, app_secret: str, **delivery: Any) -> None:
        super().__init__(**delivery)
        self.app_secret = app_secret

    def headers(self, body: bytes, delivery_id: str) -> dict[str, str]:
        return {"content-type": "application/json", SIGNATURE_HEADER: sign(self.app_secret, body)}

    def accepted(self, status: int) -> bool:
        return status == 200  # Meta counts only a 200 as delivered

    def emit(self, payload: dict[str, Any]) -> None:
        """Record the notification and deliver it in the background (when a callback URL is set)."""
        self.send(payload)
