"""Webhook signature checks, delegated to the providers' own libraries.

* Stripe: ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`` verified by
  ``stripe.WebhookSignature.verify_header`` (constant-time compare, timestamp tolerance).
* Generic: the Standard Webhooks spec (https://www.standardwebhooks.com): ``webhook-id``,
  ``webhook-timestamp``, ``webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<ts>.<body>")>`` with a
  ``whsec_<base64 key>`` secret, verified by the ``standardwebhooks`` package (5-minute tolerance).

Both raise `InvalidSignature`; the views answer 400 and change nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from standardwebhooks.webhooks import Webhook
from stripe import SignatureVerificationError, WebhookSignature


class InvalidSignature(Exception):
    """Missing, malformed, stale or forged signature."""


def verify_stripe(body: bytes, header: str | None, secret: str, tolerance_s: int) -> None:
    try:
        WebhookSignature.verify_header(body, header, secret, tolerance=tolerance_s)
    except SignatureVerificationError as e:
        raise InvalidSignature(str(e).split(".")[0][:200]) from None
    except UnicodeDecodeError:
        raise InvalidSignature("body is not UTF-8") from None


def verify_standard(body: bytes, headers: Mapping[str, str], secret: str) -> str:
    """Verify a Standard Webhooks delivery; returns its `webhook-id` (the idempotency key)."""
    hdrs = {k.lower(): v for k, v in headers.items()}
    try:
        Webhook(secret).verify(body, hdrs, json_parse=False)
    except Exception as e:  # the library raises WebhookVerificationError, and ValueError/binascii.Error
        # on malformed headers; every failure means "not verified"
        raise InvalidSignature(f"{type(e).__name__}: {str(e)[:200]}") from None
    return hdrs["webhook-id"]
