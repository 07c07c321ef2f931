"""The vault on a real PostgreSQL: data keys per account, wrapping, rotation, blind indexes, erasure."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.vault import blind, cipher, store, subject_access
from arrears_shared.vault.keys import Vault
from arrears_shared.vault.master import LocalKeyWrapper, VaultKeyError, decode_key, kek_id_for
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

INDEX_KEY = b"i" * 32


def _vault(master: bytes, *previous: bytes, cache_s: float = 0.0) -> Vault:
    return Vault(LocalKeyWrapper(master, previous), INDEX_KEY, cache_s)


@pytest.fixture(scope="module")
def url(fresh_database_url) -> str:  # type: ignore[no-untyped-def]
    u = fresh_database_url("vault")
    upgrade(u, "vault")
    return u


def test_a_sealed_value_opens_only_for_its_subject_and_is_not_deterministic() -> None:
    aead = AESGCM(AESGCM.generate_key(256))
    a, b = cipher.seal(aead, "PME-1", "Ann Smith"), cipher.seal(aead, "PME-1", "Ann Smith")
    assert a != b and a.startswith("pii1:") and "Ann" not in a
    assert cipher.open_(aead, "PME-1", a) == "Ann Smith"
    with pytest.raises(cipher.Unreadable):
        cipher.open_(aead, "PME-2", a)  # copied to another account's row: does not open
    with pytest.raises(cipher.Unreadable):
        cipher.open_(AESGCM(AESGCM.generate_key(256)), "PME-1", a)


def test_master_key_must_be_32_bytes_of_base64() -> None:
    with pytest.raises(VaultKeyError, match="32 bytes"):
        decode_key(base64.b64encode(b"short").decode())
    with pytest.raises(VaultKeyError, match="not base64"):
        decode_key("not base64 at all!")
    with pytest.raises(VaultKeyError, match="INDEX_KEY"):
        Vault(LocalKeyWrapper(os.urandom(32)), b"too short")


def test_blind_indexes_are_keyed_and_normalised() -> None:
    k1, k2 = b"a" * 32, b"b" * 32
    assert blind.index(k1, "phone", "+1 (415) 555-0100") == blind.index(k1, "phone", "+14155550100")
    assert blind.index(k1, "email", " Ann@Example.COM") == blind.index(k1, "email", "ann@example.com")
    assert blind.index(k1, "phone", "+14155550100") != blind.index(k2, "phone", "+14155550100")
    assert blind.index(k1, "email", "x") != blind.index(k1, "name", "x")  # kinds kept apart
    assert blind.name_words("Ann-Marie  SMITH ann") == ["ann", "marie", "smith"]


async def test_keys_are_created_once_per_account_even_by_concurrent_writers(url: str) -> None:
    v1, v2 = _vault(m := os.urandom(32)), _vault(m)
    e1, e2 = make_engine(url), make_engine(url)
    try:

        async def write(v: Vault, e) -> AESGCM:  # type: ignore[no-untyped-def]
            async with e.begin() as c:
                return (await v.for_writing(c, ["PME-C1"]))["PME-C1"]

        k1, k2 = await asyncio.gather(write(v1, e1), write(v2, e2))
        sealed = cipher.seal(k1, "PME-C1", "x")
        assert cipher.open_(k2, "PME-C1", sealed) == "x"  # both writers ended with the one stored key
        async with e1.connect() as c:
            rows = await store.fetch(c, ["PME-C1"])
            assert rows["PME-C1"].kek_id == kek_id_for(m)
            assert rows["PME-C1"].wrapped is not None and len(rows["PME-C1"].wrapped) == 12 + 32 + 16
    finally:
        await e1.dispose()
        await e2.dispose()


async def test_a_key_written_in_a_rolled_back_transaction_does_not_exist(url: str) -> None:
    master = os.urandom(32)
    v, e = _vault(master, cache_s=60.0), make_engine(url)  # a long cache: nothing phantom may stay in it
    try:
        async with e.connect() as c:
            tx = await c.begin()
            phantom = (await v.for_writing(c, ["PME-RB"]))["PME-RB"]
            assert (await v.for_reading(c, ["PME-RB"]))["PME-RB"] is not None  # visible inside, not cached
            await tx.rollback()
        async with e.connect() as c:
            assert await v.for_reading(c, ["PME-RB"]) == {}
        async with e.begin() as c:
            real = (await v.for_writing(c, ["PME-RB"]))["PME-RB"]
        sealed = cipher.seal(real, "PME-RB", "x")
        with pytest.raises(cipher.Unreadable):
            cipher.open_(phantom, "PME-RB", sealed)  # a new key was stored, not the rolled-back one reused
        async with e.connect() as c:  # what it sealed opens with the key the database holds (no cache)
            stored = (await _vault(master).for_reading(c, ["PME-RB"]))["PME-RB"]
            assert stored is not None and cipher.open_(stored, "PME-RB", sealed) == "x"
    finally:
        await e.dispose()


async def test_erasure_destroys_the_key_and_is_never_rekeyed(url: str) -> None:
    v, e = _vault(os.urandom(32)), make_engine(url)
    try:
        async with e.begin() as c:
            key = (await v.for_writing(c, ["PME-E1"]))["PME-E1"]
        sealed = cipher.seal(key, "PME-E1", "Ann Smith")
        async with e.begin() as c:
            assert await v.erase(c, "PME-E1", "test") is True
            assert await v.erase(c, "PME-E1", "test") is False
        async with e.begin() as c:
            assert (await v.for_reading(c, ["PME-E1"])) == {"PME-E1": None}
            throwaway = (await v.for_writing(c, ["PME-E1"]))["PME-E1"]
            with pytest.raises(cipher.Unreadable):
                cipher.open_(throwaway, "PME-E1", sealed)
            row = (await store.fetch(c, ["PME-E1"]))["PME-E1"]
            assert row.erased and row.wrapped is None  # the tombstone holds no key material
        # an account never seen can be erased too (a request ahead of its first import): no key ever
        async with e.begin() as c:
            assert await v.erase(c, "PME-NEVER", "test") is True
            assert (await v.for_reading(c, ["PME-NEVER"])) == {"PME-NEVER": None}
    finally:
        await e.dispose()


async def test_master_key_rotation_rewraps_every_live_key(fresh_database_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    url = fresh_database_url("vault_rotation")
    await asyncio.to_thread(upgrade, url, "vault")
    old, new = os.urandom(32), os.urandom(32)
    e = make_engine(url)
    try:
        async with e.begin() as c:
            key = (await _vault(old).for_writing(c, ["PME-R1"]))["PME-R1"]
        sealed = cipher.seal(key, "PME-R1", "x")
        with pytest.raises(VaultKeyError, match="not configured"):
            async with e.connect() as c:
                await _vault(new).for_reading(c, ["PME-R1"])
        rotated = _vault(new, old)
        monkeypatch.setattr("arrears_shared.vault.subject_access.vault", lambda: rotated)
        async with e.begin() as c:
            assert await subject_access.rewrap(c) >= 1
            assert await subject_access.rewrap(c) == 0
        async with e.connect() as c:  # the old master key is no longer needed
            k = (await _vault(new).for_reading(c, ["PME-R1"]))["PME-R1"]
            assert k is not None and cipher.open_(k, "PME-R1", sealed) == "x"
    finally:
        await e.dispose()


async def test_a_transaction_reuses_the_keys_it_created_and_the_next_one_reads_them_committed(
    url: str,
) -> None:
    master = os.urandom(32)
    v, e = _vault(master, cache_s=60.0), make_engine(url)
    try:
        async with e.begin() as c:
            created = (await v.for_writing(c, ["PME-TX1"]))["PME-TX1"]
            sealed = cipher.seal(created, "PME-TX1", "x")
            again = (await v.for_reading(c, ["PME-TX1"]))["PME-TX1"]
            assert again is created  # no second query or unwrap inside the transaction that made it
            assert (await v.for_writing(c, ["PME-TX1"]))["PME-TX1"] is created
        async with e.begin() as c:  # a new transaction on the same pooled connection: read from the table
            after = (await v.for_reading(c, ["PME-TX1"]))["PME-TX1"]
            assert (
                after is not created and after is not None and cipher.open_(after, "PME-TX1", sealed) == "x"
            )
    finally:
        await e.dispose()
