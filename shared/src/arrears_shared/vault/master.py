"""The master key (key-encryption key) that wraps every account's data key, and the interface a KMS plugs into.

The database holds only wrapped data keys; the master key comes from the environment
(`ARREARS_VAULT_MASTER_KEY`, base64 of 32 bytes) or, with another `KeyWrapper`, stays inside a KMS that wraps
and unwraps on request. Each wrapped key names the master key that wrapped it (`kek_id`), so master keys
rotate: the new key becomes `ARREARS_VAULT_MASTER_KEY`, the old one moves to
`ARREARS_VAULT_PREVIOUS_MASTER_KEYS` until `arrears vault rewrap` has re-wrapped every data key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class VaultKeyError(RuntimeError):
    """No usable master key, or a data key that no configured master key can unwrap."""


class KeyWrapper(Protocol):
    """Wraps and unwraps data keys. `context` (the subject) is bound to the wrapped key (AEAD associated
    data), so a wrapped key copied to another account's row does not unwrap."""

    @property
    def current_id(self) -> str: ...

    def wrap(self, key: bytes, context: bytes) -> bytes: ...

    def unwrap(self, kek_id: str, wrapped: bytes, context: bytes) -> bytes: ...


def kek_id_for(key: bytes) -> str:
    """A short public name for a master key (a hash of it), stored beside each data key it wraps."""
    return "m" + hashlib.sha256(b"arrears-vault-kek-id:" + key).hexdigest()[:12]


def decode_key(text: str, what: str = "ARREARS_VAULT_MASTER_KEY") -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as e:
        raise VaultKeyError(f"{what} is not base64") from e
    if len(key) != 32:
        raise VaultKeyError(f"{what} must be 32 bytes (base64 of `openssl rand 32`), got {len(key)}")
    return key


class LocalKeyWrapper:
    """AES-256-GCM key wrapping with master keys held in this process (from the environment)."""

    def __init__(self, current: bytes, previous: tuple[bytes, ...] = ()) -> None:
        self._current = current
        self._by_id = {kek_id_for(k): AESGCM(k) for k in (*previous, current)}
        self._current_id = kek_id_for(current)

    @property
    def current_id(self) -> str:
        return self._current_id

    def wrap(self, key: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._by_id[self._current_id].encrypt(nonce, key, b"arrears-dek|" + context)

    def unwrap(self, kek_id: str, wrapped: bytes, context: bytes) -> bytes:
        aead = self._by_id.get(kek_id)
        if aead is None:
            raise VaultKeyError(f"data key wrapped by master key {kek_id}, which is not configured")
        try:
            return aead.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], b"arrears-dek|" + context)
        except InvalidTag as e:
            raise VaultKeyError(f"data key does not unwrap with master key {kek_id}") from e
