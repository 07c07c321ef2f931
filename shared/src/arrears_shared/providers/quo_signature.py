"""Verification of QUO (OpenPhone) webhook signatures.

QUO signs every webhook with the header ``openphone-signature: hmac;1;<timestamp>;<base64 signature>``
where the signature is ``HMAC-SHA256(key=base64decode(signing_key), msg=f"{timestamp}.{raw body}")`` and the
timestamp is in milliseconds since the epoch. Some third-party code reads ``X-OpenPhone-Signature``; header
names are case-insensitive, so both spellings are accepted. Several signatures separated by commas (key
rotation) are accepted if any one of them verifies.

Total: any header value (any `str`, however long or odd) either verifies or raises `InvalidSignature`,
never another exception (property-tested and fuzzed: tests/security/test_public_paths.py, fuzz/).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNATURE_HEADERS = ("openphone-signature", "x-openphone-signature")
MAX_HEADER_CHARS = 4096  # a few rotated signatures fit many times over


class InvalidSignature(Exception):
    """The webhook's signature header is missing, malformed, stale or does not match the body."""


def _header_value(headers: Mapping[str, str]) -> str | None:
    for name, value in headers.items():
        if name.lower() in SIGNATURE_HEADERS:
            return value
    return None


def _timestamp_seconds(raw: str) -> float:
    """Epoch seconds of a header timestamp: 1 to 16 ASCII digits only (`int()` alone would also take
    `"1_0"`, `" 10 "` or non-ASCII digits such as `"١٢"`, which are not what was signed)."""
    if not (raw.isascii() and raw.isdigit() and 0 < len(raw) <= 16):
        raise ValueError("timestamp is not 1-16 ASCII digits")
    value = int(raw)
    # QUO sends milliseconds; tolerate a sender that uses seconds.
    return value / 1000.0 if value >= 10**11 else float(value)


def compute_openphone_signature(body: bytes, key_b64: str, timestamp: str) -> bytes:
    """Raw HMAC-SHA256 digest over ``<timestamp>.<body>`` with the base64-decoded key."""
    try:
        key = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidSignature("signing key is not valid base64") from exc
    return hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256).digest()


def verify_openphone_signature(
    headers: Mapping[str, str],
    body: bytes,
    key_b64: str,
    tolerance_s: int = 300,
    now: float | None = None,
) -> None:
    """Raise `InvalidSignature` unless `body` carries a valid, fresh QUO signature.

    `headers` may be any mapping (a Starlette ``Headers`` object or a plain dict); `body` must be the raw
    request body exactly as received. `now` (epoch seconds) is for tests.
    """
    header = _header_value(headers)
    if not header:
        raise InvalidSignature("missing openphone-signature header")
    if len(header) > MAX_HEADER_CHARS:
        raise InvalidSignature("openphone-signature header too long")
    current = time.time() if now is None else now
    failures: list[str] = []
    for candidate in header.split(","):
        parts = candidate.strip().split(";")
        if len(parts) != 4:
            failures.append("malformed signature header")
            continue
        scheme, version, timestamp, signature_b64 = parts
        if scheme != "hmac" or version != "1":
            failures.append(f"unsupported signature scheme {scheme};{version}")
            continue
        try:
            sent_at = _timestamp_seconds(timestamp)
        except ValueError:
            failures.append("malformed signature timestamp")
            continue
        if abs(current - sent_at) > tolerance_s:
            failures.append("signature timestamp outside tolerance")
            continue
        try:
            received = base64.b64decode(signature_b64, validate=True)
        except (binascii.Error, ValueError):
            failures.append("signature is not valid base64")
            continue
        expected = compute_openphone_signature(body, key_b64, timestamp)
        if hmac.compare_digest(expected, received):
            return
        failures.append("signature mismatch")
    raise InvalidSignature("; ".join(dict.fromkeys(failures)))
