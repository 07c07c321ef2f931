"""QUO (OpenPhone) webhook signing, as the real service does it."""

from __future__ import annotations

import base64
import hashlib
import hmac


def sign_openphone(body: bytes, key_b64: str, timestamp_ms: int) -> str:
    """The ``openphone-signature`` header value for `body`:
    ``hmac;1;<timestamp-ms>;base64(HMAC-SHA256(base64decode(key), f"{timestamp}.{body}"))``."""
    key = base64.b64decode(key_b64)
    digest = hmac.new(key, str(timestamp_ms).encode("ascii") + b"." + body, hashlib.sha256).digest()
    return f"hmac;1;{timestamp_ms};{base64.b64encode(digest).decode('ascii')}"
