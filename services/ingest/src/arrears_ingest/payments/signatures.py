"""Webhook signature checks, delegated to the providers' own libraries.

* Stripe: ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` verified by
  ``stripe.WebhookSignature.verify_header`` (constant-time compare, timestamp tolerance).
* Generic: the Standard Webhooks spec (https://www.standardwebhooks.com): ``webhook-id``,
  ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<ts>.<body>")>`` with a
  ``whsec_<base64 key>`` secret, verified by `arrears_shared.providers.standard_webhooks` (5-minute tolerance).

Both are total (any header, any body) and raise only `InvalidSignature`; the views answer 400 and change
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from arrears_shared.providers.quo_signature import InvalidSignature
from arrears_shared.providers.standard_webhooks import verify_standard_webhook
from stripe import SignatureVerificationError, WebhookSignature

__all__ = ["InvalidSignature", "verify_standard", "verify_stripe"]
MAX_HEADER_CHARS = 4096


def verify_stripe(body: bytes, header: str | None, secret: str, tolerance_s: int) -> None:
    """Total: any header and body verify or raise `InvalidSignature`. The header is checked to be printable
    ASCII first: stripe compares signatures with `hmac.compare_digest` on `str`, which raises `TypeError` for
    non-ASCII text (a 500 before this check)."""
    if header is not None and (
        len(header) > MAX_HEADER_CHARS or not (header.isascii() and header.isprintable())
    ):
        raise InvalidSignature("malformed Stripe-Signature header")
    try:
        WebhookSignature.verify_header(body, header, secret, tolerance=tolerance_s)
    except SignatureVerificationError as e:
        raise InvalidSignature(str(e).split(".")[0][:200]) from None
    except UnicodeDecodeError:
        raise InvalidSignature("body is not UTF-8") from None


def verify_standard(body: bytes, headers: Mapping[str, str], secret: str) -> str:
    """Verify a Standard Webhooks delivery; returns its `webhook-id` (the idempotency key)."""
    return verify_standard_webhook(body, headers, secret)
