"""Sign-in lockout (issue #18 item 9): repeated failed sign-ins with one API key (its public key id, wrong
secrets) lock the key — then even the right secret fails, with a message saying so — until an admin unlocks
it (audited) or the lock expires. Through a real app and gate on the real `iam` schema; the unlock through
the `arrears` CLI into the console's audit log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from arrears_cli.__main__ import app as cli
from arrears_shared.audit import list_entries
from arrears_shared.auth import keys, lockout
from arrears_shared.auth.gate import Authenticator
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.settings import AuthSettings
from auth_support import bearer, issue_key_async
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from .test_gate import make_app

LOCKED = "locked after repeated failed sign-ins"


@pytest.fixture(scope="module")
def db_url(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("lockout")
    upgrade(url, "console")  # iam (a dependency) and the console's audit log, where unlocks are recorded
    return url


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    e = make_engine(db_url)
    yield e
    await e.dispose()


def client_for(engine: AsyncEngine, **settings: Any) -> httpx.AsyncClient:
    authn = Authenticator(
        AuthSettings(auth_failure_slowdown_after=1000, auth_failure_block_after=1000, **settings)
    )
    authn.bind(engine)
    transport = httpx.ASGITransport(app=make_app(authn), client=("10.1.2.3", 4444))
    return httpx.AsyncClient(transport=transport, base_url="http://demo")


def wrong(key: str, n: int) -> str:
    """The same key id with another (well-formed) secret."""
    key_id = keys.parse(key)
    return f"ark_{key_id}_" + (f"{n:02d}" + "x" * 41)


async def run_cli(*args: str) -> Any:
    """The `arrears` command, in a thread (it runs its own event loop)."""
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


def lockouts() -> float:
    return REGISTRY.get_sample_value("arrears_auth_lockouts_total") or 0.0


async def test_failures_lock_the_key_even_for_the_right_secret_until_an_admin_unlocks(
    engine: AsyncEngine, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with engine.begin() as conn:
        key = await issue_key_async(conn, "collector")
        other = await issue_key_async(conn, "collector")
    key_id = keys.parse(key)
    before = lockouts()
    caplog.set_level(logging.INFO)
    async with client_for(engine, auth_lockout_threshold=3, auth_lockout_duration_s=0) as client:
        assert (await client.get("/accounts/a1", headers=bearer(key))).status_code == 200
        for n in range(2):
            r = await client.get("/accounts/a1", headers=bearer(wrong(key, n)))
            assert r.status_code == 401 and r.json() == {"detail": "invalid or expired credentials"}
        assert (await client.get("/accounts/a1", headers=bearer(key))).status_code == 200  # 2 < 3
        assert lockouts() == before
        r = await client.get("/accounts/a1", headers={"X-API-Key": wrong(key, 2)})  # the third locks it
        assert r.status_code == 401 and lockouts() == before + 1
        for _ in range(2):  # now even the right secret fails, and says why
            r = await client.get("/accounts/a1", headers=bearer(key))
            assert r.status_code == 401 and LOCKED in r.json()["detail"] and key_id in r.json()["detail"]
        # another person's key is not affected
        assert (await client.get("/accounts/a1", headers=bearer(other))).status_code == 200
    async with engine.connect() as conn:
        [found] = [lk for lk in await lockout.locked_keys(conn) if lk.key_id == key_id]
        assert found.locked_until is None and found.failures == 3
        [event] = [e for e in await lockout.recent_events(conn, kind="sign_in_locked") if e.subject == key_id]
        assert event.detail["failures"] == 3
    logged = caplog.text + repr([r.__dict__ for r in caplog.records])
    assert key not in logged and key.split("_", 2)[2] not in logged  # never a secret
    assert "API key locked" in caplog.text

    # the admin unlocks it (audited, with the reason); the right secret works again
    result = await run_cli(
        "keys", "unlock", key_id or "", "--reason", "owner mistyped", "--database-url", db_url
    )
    assert result.exit_code == 0, result.output
    async with engine.connect() as conn:
        entries = [e for e in await list_entries(conn, "console") if e["action"] == "sign_in.unlock"]
        assert entries and entries[-1]["entity_id"] == key_id and entries[-1]["reason"] == "owner mistyped"
        assert entries[-1]["actor"].startswith("cli:") and key not in str(entries[-1])
        assert not [lk for lk in await lockout.locked_keys(conn) if lk.key_id == key_id]
    async with client_for(engine, auth_lockout_threshold=3, auth_lockout_duration_s=0) as client:
        assert (await client.get("/accounts/a1", headers=bearer(key))).status_code == 200
        # the count started again: two more failures do not lock it
        for n in range(2):
            await client.get("/accounts/a1", headers=bearer(wrong(key, n)))
        assert (await client.get("/accounts/a1", headers=bearer(key))).status_code == 200
    again = await run_cli("keys", "unlock", key_id or "", "--reason", "x" * 5, "--database-url", db_url)
    assert again.exit_code == 1 and "not locked" in again.output


async def test_a_lock_with_a_duration_expires_by_itself(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        key = await issue_key_async(conn, "supervisor")
    async with client_for(engine, auth_lockout_threshold=2, auth_lockout_duration_s=1.5) as client:
        for n in range(2):
            await client.get("/accounts/a1", headers=bearer(wrong(key, n)))
        r = await client.get("/accounts/a1", headers=bearer(key))
        assert r.status_code == 401 and LOCKED in r.json()["detail"] and "until" in r.json()["detail"]
        await asyncio.sleep(1.7)
        assert (await client.get("/accounts/a1", headers=bearer(key))).status_code == 200


async def test_failures_outside_the_window_and_unknown_or_service_keys_lock_nothing(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        service = await issue_key_async(conn, "service")
        slow = await issue_key_async(conn, "collector")
    async with client_for(engine, auth_lockout_threshold=2, auth_lockout_window_s=0.5) as client:
        for n in range(5):  # a machine key: the per-address throttle protects it, a lock would be a DoS
            await client.get("/accounts/a1", headers=bearer(wrong(service, n)))
        assert (await client.get("/reports", headers=bearer(service))).status_code == 404  # authenticated
        await client.get("/accounts/a1", headers=bearer(wrong(slow, 0)))
        await asyncio.sleep(0.6)  # the first failure left the window
        await client.get("/accounts/a1", headers=bearer(wrong(slow, 1)))
        assert (await client.get("/accounts/a1", headers=bearer(slow))).status_code == 200
        await client.get("/accounts/a1", headers=bearer("ark_0123456789ab_" + "y" * 43))  # unknown id
    async with engine.connect() as conn:
        ids = {keys.parse(service), "0123456789ab"}
        rows = await conn.execute(text("SELECT key_id, locked_at FROM iam.sign_in_locks"))
        assert not [
            r for r in rows if r.key_id in ids or r.locked_at is not None and r.key_id == keys.parse(slow)
        ]
