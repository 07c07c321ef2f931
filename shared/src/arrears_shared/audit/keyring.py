"""The audit chain's HMAC keys (`ARREARS_AUDIT_HMAC_KEY`), which the database never holds.

Every entry names the key that sealed it (`key_id`, derived from the key itself), so keys can rotate: set
the new key as `ARREARS_AUDIT_HMAC_KEY` and move the old one to `ARREARS_AUDIT_HMAC_PREVIOUS_KEYS` (comma-
separated) for as long as entries sealed with it must still verify. Entries written before the chain was
keyed carry no key id and are checked with plain SHA-256; they are only accepted before the first keyed
entry, which seals them into the keyed chain through its `prev_hash` (docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from ..settings import AuditSettings

MIN_KEY_CHARS = 32


class AuditKeyError(RuntimeError):
    """No usable audit key: the audit log can neither be written nor verified."""


def key_id_for(key: bytes) -> str:
    """A short public name for a key (a hash of it), stored beside each entry it seals."""
    return "k" + hashlib.sha256(b"arrears-audit-key-id:" + key).hexdigest()[:12]


@dataclass(frozen=True)
class Keyring:
    current: bytes | None = None
    previous: tuple[bytes, ...] = ()
    _by_id: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for key in (*self.previous, *([self.current] if self.current else [])):
            if len(key) < MIN_KEY_CHARS:
                raise AuditKeyError(f"audit HMAC keys must be at least {MIN_KEY_CHARS} characters")
            self._by_id[key_id_for(key)] = key

    @classmethod
    def of(cls, current: str | None, *previous: str) -> Keyring:
        return cls(current.encode() if current else None, tuple(p.encode() for p in previous if p))

    @classmethod
    def from_env(cls) -> Keyring:
        s = AuditSettings()
        current = s.audit_hmac_key.get_secret_value() if s.audit_hmac_key else None
        old = s.audit_hmac_previous_keys.get_secret_value().split(",") if s.audit_hmac_previous_keys else []
        return cls.of(current, *(k.strip() for k in old))

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(self._by_id)

    @property
    def current_id(self) -> str:
        if self.current is None:
            raise AuditKeyError("ARREARS_AUDIT_HMAC_KEY is not set: audit entries cannot be sealed")
        return key_id_for(self.current)

    def seal(self, key_id: str, blob: bytes) -> str | None:
        """HMAC-SHA256 hex of `blob` under key `key_id`; None when that key is not in the ring."""
        key = self._by_id.get(key_id)
        return hmac.new(key, blob, hashlib.sha256).hexdigest() if key is not None else None


_keyring: Keyring | None = None


def keyring() -> Keyring:
    """The process's keyring, read from the environment once it holds a key (until then on every call, so a
    process that sets the key after start-up, like `arrears up` for its own stack, is not stuck keyless)."""
    global _keyring
    if _keyring is None or _keyring.current is None:
        _keyring = Keyring.from_env()
    return _keyring
