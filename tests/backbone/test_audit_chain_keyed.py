"""The keyed audit chain on the real PostgreSQL: entries are sealed with an HMAC whose key the database does
not hold, so an edit (even one re-hashed by a superuser) is caught by `verify` and by the hourly check
(`arrears_audit_chain_ok` 0); a truncated tail is caught against the last head published; verification
without the right key fails; keys rotate; entries from before the chain was keyed stay valid only as a
prefix."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from arrears_shared.audit import append, verify
from arrears_shared.audit import keyring as keyring_mod
from arrears_shared.audit.chain import entry_hash
from arrears_shared.audit.keyring import AuditKeyError, Keyring
from arrears_shared.audit.monitor import ChainCheck
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

S = "escalation"
OTHER_KEY = "another-audit-key-nobody-configured-here"


@pytest.fixture
async def engine(fresh_database_url: Callable[..., str]) -> AsyncIterator[AsyncEngine]:
    url = fresh_database_url("keyed")
    await asyncio.to_thread(upgrade, url, "escalation")
    e = make_engine(url)
    yield e
    await e.dispose()


async def write(engine: AsyncEngine, n: int) -> None:
    for i in range(n):
        async with engine.begin() as c:
            await append(
                c, S, actor="alice", role="admin", action="case.close", entity="case", entity_id=f"C{i}"
            )


async def superuser(engine: AsyncEngine, *sql: str) -> None:
    async with engine.begin() as c:
        await c.execute(text(f"ALTER TABLE {S}.audit_log DISABLE TRIGGER USER"))
        for stmt in sql:
            await c.execute(text(stmt))
        await c.execute(text(f"ALTER TABLE {S}.audit_log ENABLE TRIGGER USER"))


def chain_ok() -> float | None:
    return REGISTRY.get_sample_value("arrears_audit_chain_ok", {"service": "escalation"})


async def test_entries_are_sealed_with_the_key_and_verify_needs_it(engine: AsyncEngine) -> None:
    await write(engine, 3)
    async with engine.connect() as c:
        report = await verify(c, S)
        assert report.ok and report.entries == 3, report.problems
        kids = set((await c.execute(text(f"SELECT key_id FROM {S}.audit_log"))).scalars())
        assert kids == {keyring_mod.keyring().current_id}
        without = await verify(c, S, ring=Keyring())
        assert not without.ok and "not configured" in without.problems[0]
        wrong = await verify(c, S, ring=Keyring.of(OTHER_KEY))
        assert not wrong.ok


async def test_an_edit_rehashed_without_the_key_is_caught_by_verify_and_the_hourly_check(
    engine: AsyncEngine,
) -> None:
    await write(engine, 3)
    check = ChainCheck(engine, "escalation", S)
    assert (await check.run()) is not None and chain_ok() == 1.0
    assert check.verified is not None and check.verified[0] == 3
    # a superuser edits entry 2 and recomputes a plain SHA-256 "hash" for it: no key, so no valid seal
    async with engine.connect() as c:
        row = (await c.execute(text(f"SELECT * FROM {S}.audit_log WHERE seq = 2"))).one()
    forged = hashlib.sha256(b"whatever the attacker computes").hexdigest()
    await superuser(
        engine, f"UPDATE {S}.audit_log SET reason = 'nothing to see', hash = '{forged}' WHERE seq = 2"
    )
    async with engine.connect() as c:
        report = await verify(c, S)
    assert not report.ok and any("entry 2" in p for p in report.problems), report.problems
    after = await check.run()  # the next hourly round
    assert after is not None and not after.ok and chain_ok() == 0.0
    assert any("entry 2" in p for p in after.problems) and any("entry 3" in p for p in after.problems)
    assert row.hash != forged


async def test_a_truncated_tail_is_caught_against_the_published_head(engine: AsyncEngine) -> None:
    await write(engine, 4)
    check = ChainCheck(engine, "escalation", S)
    first = await check.run()
    assert first is not None and first.ok and chain_ok() == 1.0
    head = (first.head_seq, first.head_hash)
    await superuser(engine, f"DELETE FROM {S}.audit_log WHERE seq >= 3")
    async with engine.connect() as c:
        assert (await verify(c, S)).ok  # the chain alone cannot tell...
        anchored = await verify(c, S, anchor=head)  # ...the published head can
    assert not anchored.ok and "truncated" in anchored.problems[0]
    second = await check.run()  # the next hourly round, anchored on the head it published
    assert second is not None and not second.ok and "anchor entry 4 is gone" in second.problems[0]
    assert chain_ok() == 0.0


async def test_one_replica_checks_at_a_time(engine: AsyncEngine) -> None:
    await write(engine, 1)
    async with engine.connect() as holder:
        await holder.execute(text("SELECT pg_advisory_lock(hashtext('arrears-audit-check-escalation'))"))
        assert await ChainCheck(engine, "escalation", S).run() is None
        await holder.execute(text("SELECT pg_advisory_unlock(hashtext('arrears-audit-check-escalation'))"))
    assert await ChainCheck(engine, "escalation", S).run() is not None


async def test_keys_rotate_and_unkeyed_entries_are_only_a_prefix(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    legacy = entry_hash(
        seq=1, at=at, actor="bob", role="admin", action="old", entity="case", entity_id="L",
        before=None, after=None, reason="", prev_hash="0" * 64,
    )  # fmt: skip
    async with engine.begin() as c:
        await c.execute(
            text(
                f"""INSERT INTO {S}.audit_log (seq, at, actor, role, action, entity, entity_id, reason, prev_hash,
                hash) VALUES (1, :at, 'bob', 'admin', 'old', 'case', 'L', '', :p, :h)"""
            ),
            {"at": at, "p": "0" * 64, "h": legacy},
        )
    old = keyring_mod.keyring()
    await write(engine, 1)
    new_key = "the-next-audit-key-after-rotation-0001"
    monkeypatch.setattr(keyring_mod, "_keyring", Keyring.of(new_key, old.current.decode()))  # type: ignore[union-attr]
    await write(engine, 1)
    async with engine.connect() as c:
        both = await verify(c, S)
        assert both.ok and both.entries == 3 and both.unkeyed_entries == 1, both.problems
        assert not (await verify(c, S, ring=Keyring.of(new_key))).ok  # the retired key is still needed
    # an unkeyed entry after keyed ones is a forgery
    await superuser(engine, f"UPDATE {S}.audit_log SET key_id = NULL WHERE seq = 3")
    async with engine.connect() as c:
        assert any("forged" in p for p in (await verify(c, S)).problems)
    monkeypatch.setattr(keyring_mod, "_keyring", Keyring())
    monkeypatch.delenv("ARREARS_AUDIT_HMAC_KEY")  # a keyless ring is read again from the environment
    async with engine.begin() as c:
        with pytest.raises(AuditKeyError):
            await append(c, S, actor="a", role="admin", action="x", entity="case", entity_id="X")
