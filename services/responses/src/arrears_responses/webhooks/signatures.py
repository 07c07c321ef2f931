"""Which of QUO's two webhook systems signed a delivery, and its verification.

- New webhooks (https://www.quo.com/docs/mdx/beta/webhooks-quickstart, the Standard Webhooks spec): headers
  ``webhook-id``, ``webhook-timestamp`` (seconds) and ``webhook-signature`` (space-separated ``v1,<base64>``),
  HMAC-SHA256 over ``{id}.{timestamp}.{raw body}`` with the ``whsec_`` secret
  (``ARREARS_QUO_WEBHOOK_SECRET``). Verified by `arrears_shared.providers.standard_webhooks` (header shapes
  checked, then the spec's reference library: several signatures, constant-time compare); ``webhook-id`` is
  the delivery's idempotency key.
- Legacy webhooks (being retired; https://www.quo.com/docs/webhooks/legacy-signature-validation):
  ``openphone-signature`` with the base64 signing key (``ARREARS_QUO_WEBHOOK_SIGNING_KEY``), verified by
  `arrears_shared.providers.quo_signature`.

A delivery carrying ``webhook-signature`` is always checked as a new webhook (never downgraded to legacy).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from arrears_shared.providers.quo_signature import InvalidSignature, verify_openphone_signature
from arrears_shared.providers.standard_webhooks import header, verify_standard_webhook

from ..settings import ResponsesSettings


class WebhookRejected(Exception):
    """Missing or invalid signature, or no key configured for the delivery's system."""


@dataclass(frozen=True)
class VerifiedDelivery:
    system: str  # "standard" | "legacy"
    delivery_id: str | None  # webhook-id of the new system


def verify_quo_webhook(
    headers: Mapping[str, str], body: bytes, settings: ResponsesSettings, now: float | None = None
) -> VerifiedDelivery:
    """Total: any headers and body give a `VerifiedDelivery` or a `WebhookRejected` (answered 401)."""
    if header(headers, "webhook-signature") is not None or header(headers, "webhook-id") is not None:
        secret = settings.quo_webhook_secret
        if secret is None:
            raise WebhookRejected("new-system QUO webhook but ARREARS_QUO_WEBHOOK_SECRET is not set")
        try:
            delivery_id = verify_standard_webhook(
                body,
                headers,
                secret.get_secret_value(),
                tolerance_s=settings.responses_webhook_tolerance_s,
                now=now,
            )
        except InvalidSignature as e:
            raise WebhookRejected(str(e)) from e
        return VerifiedDelivery("standard", delivery_id)
    key = settings.quo_webhook_signing_key
    if key is None:
        raise WebhookRejected("legacy QUO webhook but ARREARS_QUO_WEBHOOK_SIGNING_KEY is not set")
    try:
        verify_openphone_signature(
            headers, body, key.get_secret_value(), tolerance_s=settings.responses_webhook_tolerance_s, now=now
        )
    except InvalidSignature as e:
        raise WebhookRejected(f"invalid signature: {e}") from e
    return VerifiedDelivery("legacy", None)
