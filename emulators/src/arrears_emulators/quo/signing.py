"""QUO (OpenPhone) webhook signing, as the real service does it, for both of its webhook systems.

- Legacy webhooks (being retired; https://www.quo.com/docs/webhooks/legacy-signature-validation): one header
  ``openphone-signature: hmac;1;<timestamp-ms>;<base64 signature>``, HMAC-SHA256 over
  ``{timestamp}.{raw body}`` with the base64-decoded signing key.
- New webhooks (https://www.quo.com/docs/mdx/beta/webhooks-quickstart), which follow the Standard Webhooks
  spec (https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md):
  ``webhook-id``, ``webhook-timestamp`` (Unix seconds), ``webhook-signature`` (space-separated
  ``v1,<base64>`` entries), HMAC-SHA256 over ``{id}.{timestamp}.{raw body}`` with the key of the
  ``whsec_<base64>`` secret. Written here by hand from the spec (the services verify with the
  ``standardwebhooks`` library), so the two implementations check each other.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

WHSEC_PREFIX = "whsec_"


def sign_openphone(body: bytes, key_b64: str, timestamp_ms: int) -> str:
    """The ``openphone-signature`` header value for `body`:
    ``hmac;1;<timestamp-ms>;base64(HMAC-SHA256(base64decode(key), f"{timestamp}.{body}"))``."""
    key = base64.b64decode(key_b64)
    digest = hmac.new(key, str(timestamp_ms).encode("ascii") + b"." + body, hashlib.sha256).digest()
    return f"hmac;1;{timestamp_ms};{base64.b64encode(digest).decode('ascii')}"


def standard_signature(body: bytes, secret: str, webhook_id: str, timestamp_s: int) -> str:
    """One ``v1,<base64>`` entry of the ``webhook-signature`` header."""
    key = base64.b64decode(secret.removeprefix(WHSEC_PREFIX))
    signed = f"{webhook_id}.{timestamp_s}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode("ascii")


def sign_standard(body: bytes, secrets: list[str], webhook_id: str, timestamp_s: int) -> dict[str, str]:
    """The three Standard Webhooks headers; several secrets (rotation) give several signatures."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp_s),
        "webhook-signature": " ".join(standard_signature(body, s, webhook_id, timestamp_s) for s in secrets),
    }
