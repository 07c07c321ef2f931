"""Verification of Standard Webhooks deliveries (https://www.standardwebhooks.com), total over its inputs.

Headers ``webhook-id``, ``webhook-timestamp`` (epoch seconds) and ``webhook-signature`` (space-separated
``v1,<base64>``), HMAC-SHA256 over ``{id}.{timestamp}.{raw body}`` with a ``whsec_<base64 key>`` secret. The
HMAC and the constant-time compare are the reference library's (``standardwebhooks``); this module first
checks the headers' shape itself, because the library lets some malformed values through to errors of its
own kind (``float()`` accepts ``"nan"``, ``"1_0"`` and non-ASCII digits; a signature without a comma raises
``ValueError``). Any header values, any body: the delivery's id, or `InvalidSignature` — nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from standardwebhooks.webhooks import Webhook

from .quo_signature import InvalidSignature

HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
MAX_ID_CHARS = 256
MAX_SIGNATURE_CHARS = 4096


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The first value of `name` (case-insensitive) in any mapping of header names to values."""
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _printable_ascii(value: str) -> bool:
    return value.isascii() and value.isprintable()


def verify_standard_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    tolerance_s: float = 300,
    now: float | None = None,
) -> str:
    """The ``webhook-id`` of a delivery whose signature verifies; `InvalidSignature` otherwise."""
    msg_id, timestamp, signature = (header(headers, n) for n in HEADERS)
    if not msg_id or not timestamp or not signature:
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    if len(msg_id) > MAX_ID_CHARS or not _printable_ascii(msg_id):
        raise InvalidSignature("malformed webhook-id")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise InvalidSignature("malformed webhook-timestamp")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        raise InvalidSignature("webhook-timestamp outside tolerance")
    if len(signature) > MAX_SIGNATURE_CHARS or not _printable_ascii(signature):
        raise InvalidSignature("malformed webhook-signature")
    candidates = [s for s in signature.split(" ") if s]
    if not candidates or any(s.count(",") != 1 for s in candidates):
        raise InvalidSignature("malformed webhook-signature")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidSignature("body is not UTF-8") from None
    try:
        Webhook(secret).verify(
            body,
            {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": " ".join(candidates)},
            json_parse=False,
        )
    except (
        Exception
    ) as e:  # WebhookVerificationError; ValueError/binascii.Error on bad base64 — all "not verified"
        raise InvalidSignature(f"invalid webhook-signature: {type(e).__name__}") from None
    return msg_id
