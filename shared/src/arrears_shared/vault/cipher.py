"""Field encryption with an account's data key: AES-256-GCM, the subject bound as associated data.

A sealed value is text, so it fits every column and JSON field a plain value did:
`pii1:` + base64url(nonce ‖ ciphertext ‖ tag). A value without the prefix is plaintext written before
encryption was on (or by an older release) and is read as it is.
"""

from __future__ import annotations

import base64
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from . import fields

PREFIX = "pii1:"
NONCE_BYTES = 12
ERASED = "[erased]"  # shown for a sealed value whose account was erased
UNREADABLE = "[unreadable]"  # shown for a sealed value that does not open (another account's, tampered)


class Unreadable(Exception):
    """The value was sealed for another subject or has been tampered with."""


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def seal(aead: AESGCM, subject: str, plaintext: str) -> str:
    nonce = os.urandom(NONCE_BYTES)
    ct = aead.encrypt(nonce, plaintext.encode(), subject.encode())
    return PREFIX + base64.urlsafe_b64encode(nonce + ct).decode().rstrip("=")


def open_(aead: AESGCM, subject: str, value: str) -> str:
    body = value[len(PREFIX) :]
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    try:
        return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], subject.encode()).decode()
    except (InvalidTag, ValueError) as e:
        raise Unreadable(f"sealed value does not open for subject {subject!r}") from e


def seal_value(aead: AESGCM, subject: str, value: str | None) -> str | None:
    """A value for storage: sealed (once: a sealed value stays as it is), or None/empty as it is."""
    return seal(aead, subject, value) if value and not is_sealed(value) else value


def open_value(aead: AESGCM | None, subject: str, value: str | None) -> str | None:
    """A stored value for display: plaintext (written before sealing) as it is, `[erased]` without a key,
    `[unreadable]` when it does not open."""
    if not value or not is_sealed(value):
        return value
    if aead is None:
        return ERASED
    try:
        return open_(aead, subject, value)
    except Unreadable:
        return UNREADABLE


def seal_fields(aead: AESGCM, subject: str, data: Any, paths: tuple[str, ...]) -> Any:
    """`data` (a JSON document, changed in place and returned) with the strings at `paths` sealed
    (`Event.personal` syntax: `a`, `a.*`, `a.*.b`); values already sealed stay as they are."""
    fields.apply(data, paths, lambda v: v if is_sealed(v) else seal(aead, subject, v))
    return data


def open_fields(aead: AESGCM | None, subject: str, data: Any, paths: tuple[str, ...]) -> Any:
    """`data` (changed in place and returned) with the sealed strings at `paths` opened for use or display
    (`[erased]` without a key, as `open_value`)."""
    fields.apply(data, paths, lambda v: open_value(aead, subject, v) or v)
    return data
