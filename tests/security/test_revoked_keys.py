"""A revoked or rotated key stays revoked across restarts.

Issue #16 reported that start-up re-inserted a configured bootstrap key with `revoked_at` cleared. That
code (escalation's `upsert_key`, `ON CONFLICT (name) DO UPDATE ... revoked_at = NULL`) was removed with the
shared key store; what runs at start today is every service's migrations and, for `arrears up`, the first
admin key (`issue_admin_key` -> `keys.issue_first_admin`). This test runs exactly those, three times over
the same database, with an operator revoking and rotating keys in between, and checks that nothing that was
revoked ever works again, that its revocation time is never rewritten, and that each start's key is audited.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import datetime

from arrears_cli.__main__ import app as cli
from arrears_cli.stack.platform import issue_admin_key
from arrears_shared.audit import list_entries, verify
from arrears_shared.auth import keys
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade_all
from sqlalchemy import text
from typer.testing import CliRunner


def start(url: str) -> str:
    """What a (re)start does to the database: migrate every schema, then issue the stack's admin key."""
    upgrade_all(url)
    return asyncio.run(issue_admin_key(url, os.environ["ARREARS_AUDIT_HMAC_KEY"]))


def db(url: str, work: Callable[..., object]) -> object:
    async def go() -> object:
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                return await work(conn)  # type: ignore[misc]
        finally:
            await engine.dispose()

    return asyncio.run(go())


def revoked_at(url: str, key_id: str) -> datetime | None:
    async def get(conn):  # type: ignore[no-untyped-def]
        info = await keys.get(conn, key_id)
        assert info is not None
        return info.revoked_at

    return db(url, get)  # type: ignore[return-value]


def works(url: str, key: str) -> bool:
    async def auth(conn):  # type: ignore[no-untyped-def]
        return await keys.authenticate(conn, key) is not None

    return bool(db(url, auth))


def cli_ok(url: str, *args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--database-url", url])
    assert result.exit_code == 0, result.output
    return result.output


def test_revoked_and_rotated_keys_stay_revoked_across_restarts(
    fresh_database_url: Callable[..., str],
) -> None:
    url = fresh_database_url("revoked_keys")
    first = start(url)
    first_id = keys.parse(first)
    assert first_id and works(url, first)

    # the operator revokes the stack's admin key and rotates another one
    assert "revoked" in cli_ok(url, "keys", "revoke", first_id)
    made = cli_ok(url, "keys", "create", "nightly", "--role", "service")
    nightly = next(ln for ln in made.splitlines() if ln.startswith("ark_") and "_…" not in ln)
    cli_ok(url, "keys", "rotate", "nightly")
    first_revoked_at, nightly_revoked_at = (
        revoked_at(url, first_id),
        revoked_at(url, keys.parse(nightly) or ""),
    )
    assert first_revoked_at is not None and nightly_revoked_at is not None

    second = start(url)  # restart 1: no active admin key, so a new one (new id, new secret)
    assert keys.parse(second) != first_id
    third = start(url)  # restart 2: the active one is rotated out
    for _ in range(2):
        assert not works(url, first) and not works(url, nightly) and not works(url, second)
        assert works(url, third)
        assert revoked_at(url, first_id) == first_revoked_at  # never cleared nor rewritten
        assert revoked_at(url, keys.parse(nightly) or "") == nightly_revoked_at
        upgrade_all(url)  # migrations alone (every service's start) change no key

    async def state(conn):  # type: ignore[no-untyped-def]
        active = (
            await conn.execute(
                text("SELECT count(*) FROM iam.api_keys WHERE name = 'admin' AND revoked_at IS NULL")
            )
        ).scalar_one()
        entries = await list_entries(conn, "console", limit=50)
        return active, entries, await verify(conn, "console")

    active, entries, report = db(url, state)  # type: ignore[misc]
    assert active == 1
    starts = [(e["actor"], e["action"]) for e in reversed(entries) if e["actor"] == "arrears up"]
    assert starts == [
        ("arrears up", "api_key.create"),
        ("arrears up", "api_key.create"),
        ("arrears up", "api_key.rotate"),
    ]
    revoke = next(e for e in entries if e["action"] == "api_key.revoke")
    assert revoke["entity_id"] == first_id and revoke["actor"].startswith("cli:")
    assert report.ok, report.problems
