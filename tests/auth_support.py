"""Credentials for tests: real API keys in the `iam` schema, and an OIDC issuer with keys made here.

key = issue_key(database_url, "supervisor")          # migrates `iam` if needed; returns the plaintext
httpx.get(url, headers=bearer(key))

async with engine.begin() as conn: key = await issue_key_async(conn, "admin")
"""

from __future__ import annotations

import itertools
from typing import Any

from arrears_cli.stack.processes import call_in_fresh_thread
from arrears_shared.auth import keys
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from sqlalchemy.ext.asyncio import AsyncConnection

_names = itertools.count(1)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def issue_key_async(conn: AsyncConnection, role: str, *, name: str | None = None, **kw: Any) -> str:
    _, plaintext = await keys.create(
        conn, name=name or f"test-{role}-{next(_names)}", roles=(role,), created_by="tests", **kw
    )
    return plaintext


def issue_key(
    database_url: str, role: str, *, name: str | None = None, migrate: bool = True, **kw: Any
) -> str:
    """A new API key with `role` in the database at `database_url` (its `iam` schema migrated first)."""
    if migrate:  # alembic runs its own event loop: never in a thread that may run one (Playwright)
        call_in_fresh_thread(lambda: upgrade(database_url, "iam"))

    async def go() -> str:
        engine = make_engine(database_url)
        try:
            async with engine.begin() as conn:
                return await issue_key_async(conn, role, name=name, **kw)
        finally:
            await engine.dispose()

    return str(call_in_fresh_thread(go))  # a thread of its own: callers may run an event loop (Playwright)
