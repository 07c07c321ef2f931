"""The vault: each account's data key, created on first write, cached briefly, destroyed by erasure.

`Keys` maps a subject to an AES-GCM cipher (live) or `None` (erased). Writers get a key for every subject
(an erased subject gets a throw-away key nobody holds, so what is written for it is unreadable by
construction); readers get only keys that exist.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Collection, Iterable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncConnection

from ..settings import VaultSettings
from . import blind, store
from .master import KeyWrapper, LocalKeyWrapper, VaultKeyError, decode_key

Keys = dict[str, AESGCM | None]
_CACHE_MAX = 200_000


class Vault:
    def __init__(self, wrapper: KeyWrapper, index_key: bytes, cache_s: float = 5.0) -> None:
        if len(index_key) < 32:
            raise VaultKeyError("ARREARS_VAULT_INDEX_KEY must be at least 32 characters")
        self.wrapper = wrapper
        self._index_key = index_key
        self.cache_s = cache_s
        # (database, subject) -> key: a process that talks to two databases (tools, tests) never mixes them
        self._cache: OrderedDict[tuple[str, str], tuple[AESGCM | None, float]] = OrderedDict()

    @classmethod
    def from_env(cls) -> Vault:
        s = VaultSettings()
        if s.vault_master_key is None or s.vault_index_key is None:
            raise VaultKeyError(
                "ARREARS_VAULT_MASTER_KEY and ARREARS_VAULT_INDEX_KEY must be set: personal data is "
                'encrypted per account (docs/security.md, "Personal data")'
            )
        previous: tuple[bytes, ...] = ()
        if s.vault_previous_master_keys:
            previous = tuple(
                decode_key(k, "ARREARS_VAULT_PREVIOUS_MASTER_KEYS")
                for k in s.vault_previous_master_keys.get_secret_value().split(",")
                if k.strip()
            )
        wrapper = LocalKeyWrapper(decode_key(s.vault_master_key.get_secret_value()), previous)
        return cls(wrapper, s.vault_index_key.get_secret_value().encode(), s.vault_key_cache_s)

    # -- blind indexes ---------------------------------------------------------------------------------
    def exact_index(self, kind: str, value: str | None) -> str | None:
        """The blind index an equality lookup uses (`kind`: "phone", "email", "address", ...; the value is
        normalised for phone and email), or None for no value."""
        return blind.index(self._index_key, kind, value) if value else None

    def name_index(self, name: str | None) -> list[str]:
        """What a name is found by: every prefix (2+ characters) of each of its words."""
        terms = dict.fromkeys(p for w in blind.name_words(name or "") for p in blind.prefixes(w))
        return [blind.index(self._index_key, "name", t) for t in terms]

    def name_query(self, q: str) -> list[str]:
        """A search's name terms: each word of `q` (2+ characters) must start a word of the name."""
        return [blind.index(self._index_key, "name", w) for w in blind.name_words(q) if len(w) >= 2]

    def phone_index(self, phone: str | None) -> list[str]:
        """What a number is found by: each trailing run of 4+ digits."""
        return [blind.index(self._index_key, "phone-tail", t) for t in blind.digit_tails(phone or "")]

    def email_index(self, email: str | None) -> list[str]:
        """What an address is found by: the whole of it, its local part, its domain."""
        if not email:
            return []
        local, _, domain = email.strip().lower().rpartition("@")
        terms = [("email", email), ("email-local", local), ("email-domain", domain)]
        return [blind.index(self._index_key, k, t) for k, t in terms if t]

    def email_query(self, q: str) -> list[str]:
        """A search's email terms: the whole address, or a local part or domain on its own (any may match)."""
        q = q.strip().lower()
        if "@" in q:
            return [blind.index(self._index_key, "email", q)]
        return [
            blind.index(self._index_key, "email-local", q),
            blind.index(self._index_key, "email-domain", q),
        ]

    def phone_query(self, q: str) -> str | None:
        digits = "".join(c for c in q if c.isdigit())
        return blind.index(self._index_key, "phone-tail", digits) if len(digits) >= 4 else None

    # -- keys ------------------------------------------------------------------------------------------
    def _cached(self, db: str, subjects: Iterable[str]) -> tuple[Keys, list[str]]:
        now, found, missing = time.monotonic(), {}, []
        for s in subjects:
            hit = self._cache.get((db, s))
            if hit is not None and hit[1] > now:
                found[s] = hit[0]
            else:
                missing.append(s)
        return found, missing

    def _remember(self, db: str, keys: Keys) -> None:
        expires = time.monotonic() + self.cache_s
        for s, k in keys.items():
            self._cache[(db, s)] = (k, expires)
            self._cache.move_to_end((db, s))
        while len(self._cache) > _CACHE_MAX:
            self._cache.popitem(last=False)

    def forget(self, subject: str) -> None:
        for entry in [e for e in self._cache if e[1] == subject]:
            del self._cache[entry]

    def _unwrap(self, stored: dict[str, store.StoredKey]) -> Keys:
        out: Keys = {}
        for s, k in stored.items():
            if k.erased or k.wrapped is None or k.kek_id is None:
                out[s] = None
            else:
                out[s] = AESGCM(self.wrapper.unwrap(k.kek_id, k.wrapped, s.encode()))
        return out

    async def for_reading(self, conn: AsyncConnection, subjects: Collection[str]) -> Keys:
        """Keys of the subjects that have one (None for an erased subject; absent: never keyed)."""
        db, own = _database_of(conn), _written_in(conn)
        found, missing = self._cached(db, (s for s in dict.fromkeys(subjects) if s not in own))
        found.update({s: own[s] for s in subjects if s in own})
        if missing:
            stored = await store.fetch(conn, missing)
            fetched = self._unwrap(stored)
            # a key (or tombstone) this transaction wrote is not cached: the transaction may roll back
            self._remember(db, {s: k for s, k in fetched.items() if not stored[s].own})
            own.update({s: k for s, k in fetched.items() if stored[s].own})
            found.update(fetched)
        return found

    async def for_writing(self, conn: AsyncConnection, subjects: Collection[str]) -> dict[str, AESGCM]:
        """A key for every subject, created in `conn`'s transaction where missing (it commits with the data
        it protects). An erased subject gets a throw-away key: what is sealed for it can never be read."""
        keys = await self.for_reading(conn, subjects)
        new = [s for s in dict.fromkeys(subjects) if s not in keys]
        if new:
            raw = {s: AESGCM.generate_key(256) for s in new}
            wrapped = [self.wrapper.wrap(raw[s], s.encode()) for s in new]
            inserted = await store.insert_missing(conn, new, self.wrapper.current_id, wrapped)
            created = {s: AESGCM(raw[s]) for s in inserted}
            keys.update(created)
            _written_in(conn).update(created)  # later calls of this transaction reuse them, unwrapped
            # a concurrent writer keyed (or erased) the others first: its row won, read it
            lost = [s for s in new if s not in inserted]
            keys.update(self._unwrap(await store.fetch(conn, lost)))
            # not cached until committed: the transaction may still roll back
        return {s: (k if k is not None else AESGCM(os.urandom(32))) for s, k in keys.items()}

    async def erase(self, conn: AsyncConnection, subject: str, by: str) -> bool:
        erased = await store.tombstone(conn, subject, by)
        self.forget(subject)
        return erased


def _written_in(conn: AsyncConnection) -> dict[str, AESGCM | None]:
    """The keys `conn`'s current transaction wrote (or saw it write): valid for that transaction only, so
    they live in the connection's info under the transaction object and are dropped with it."""
    sync = conn.sync_connection
    if sync is None:
        return {}
    tx = sync.get_nested_transaction() or sync.get_transaction()  # a savepoint may roll back on its own
    if tx is None:
        return {}
    held = sync.info.get("arrears_vault_written")
    if held is None or held[0] is not tx:
        held = (tx, {})
        sync.info["arrears_vault_written"] = held
    return held[1]


def _database_of(conn: AsyncConnection) -> str:
    url = conn.engine.url
    return f"{url.host}:{url.port}/{url.database}"


_vault: Vault | None = None


def vault() -> Vault:
    """The process's vault, built from the environment on first use."""
    global _vault
    if _vault is None:
        _vault = Vault.from_env()
    return _vault
