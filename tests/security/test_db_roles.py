"""Least privilege in PostgreSQL, on the real server: each service runs with its own role that can use only
its own schema, its audit log is INSERT/SELECT only (UPDATE, DELETE, TRUNCATE refused), the schema belongs to
a NOLOGIN owner role that the migrations run as, and `arrears migrate --create-roles` sets it all up."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from arrears_cli.__main__ import app as cli_app
from arrears_shared.audit import append, verify
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade, upgrade_all
from arrears_shared.db.roles import ensure_roles, owner_role, role_url, runtime_role
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from typer.testing import CliRunner

SERVICES = ("segmenter", "escalation", "console", "dispatcher-sms")


@pytest.fixture(scope="module")
def admin_url(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("roles")

    async def roles() -> None:
        engine = make_engine(url)
        try:
            await ensure_roles(engine, SERVICES, {})
        finally:
            await engine.dispose()

    asyncio.run(roles())
    upgrade_all(url)
    return url


def as_role(admin_url: str, service: str, fn: Callable[[AsyncConnection], Awaitable[Any]]) -> Any:
    async def run() -> Any:
        engine = make_engine(role_url(admin_url, runtime_role(service), None))
        try:
            async with engine.begin() as conn:
                assert await conn.scalar(text("SELECT current_user")) == runtime_role(service)
                return await fn(conn)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def refused(admin_url: str, service: str, sql: str, match: str = "permission denied") -> None:
    with pytest.raises(DBAPIError, match=match):
        as_role(admin_url, service, lambda c: c.execute(text(sql)))


def test_a_service_cannot_touch_another_services_schema(admin_url: str) -> None:
    refused(admin_url, "segmenter", "SELECT * FROM escalation.audit_log")
    refused(admin_url, "segmenter", "SELECT * FROM escalation.inbox")
    refused(admin_url, "escalation", "SELECT * FROM segmenter.accounts")
    refused(admin_url, "dispatcher-sms", "DELETE FROM console.outbox")
    # its own schema works
    assert (
        as_role(admin_url, "segmenter", lambda c: c.scalar(text("SELECT count(*) FROM segmenter.accounts")))
        == 0
    )


def test_the_runtime_role_owns_nothing_and_cannot_change_the_schema(admin_url: str) -> None:
    refused(admin_url, "segmenter", "CREATE TABLE segmenter.sneaky (x int)")
    refused(admin_url, "segmenter", "DROP TABLE segmenter.accounts", match="must be owner")
    refused(
        admin_url, "segmenter", "ALTER TABLE segmenter.audit_log DISABLE TRIGGER ALL", match="must be owner"
    )
    refused(admin_url, "segmenter", "UPDATE segmenter.alembic_version SET version_num = 'x'")

    async def owners(conn: AsyncConnection) -> set[str]:
        rows = await conn.execute(
            text(
                "SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class "
                "WHERE relnamespace = 'segmenter'::regnamespace UNION "
                "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'segmenter'"
            )
        )
        return set(rows.scalars())

    assert as_role(admin_url, "segmenter", owners) == {owner_role("segmenter")}
    # at start-up the service's own upgrade() finds its schema at head and goes on without migrating
    upgrade(role_url(admin_url, runtime_role("segmenter"), None), "segmenter")
    upgrade(role_url(admin_url, runtime_role("segmenter"), None), "iam")


def test_the_audit_log_is_insert_and_select_only_for_the_runtime_role(admin_url: str) -> None:
    async def write(conn: AsyncConnection) -> int:
        return await append(conn, "segmenter", actor="a", role="admin", action="t", entity="e", entity_id="1")

    assert as_role(admin_url, "segmenter", write) == 1
    for sql in (
        "UPDATE segmenter.audit_log SET reason = 'x'",
        "DELETE FROM segmenter.audit_log",
        "TRUNCATE segmenter.audit_log",
    ):
        refused(admin_url, "segmenter", sql)

    # even the owner (here a superuser) meets the triggers; TRUNCATE included
    async def truncate() -> None:
        engine = make_engine(admin_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("TRUNCATE segmenter.audit_log"))
        finally:
            await engine.dispose()

    with pytest.raises(DBAPIError, match="append-only"):
        asyncio.run(truncate())
    assert as_role(admin_url, "segmenter", lambda c: verify(c, "segmenter")).ok


def test_iam_is_readable_by_every_service_and_written_only_by_the_console(admin_url: str) -> None:
    insert = (
        "INSERT INTO iam.api_keys (key_id, name, roles, key_hash, created_by) "
        "VALUES ('k-{0}', 'n-{0}', ARRAY['viewer'], 'h', 'test')"
    )
    as_role(admin_url, "console", lambda c: c.execute(text(insert.format("console"))))
    assert as_role(admin_url, "segmenter", lambda c: c.scalar(text("SELECT count(*) FROM iam.api_keys"))) == 1
    as_role(admin_url, "segmenter", lambda c: c.execute(text("UPDATE iam.api_keys SET last_used_at = now()")))
    refused(admin_url, "segmenter", insert.format("segmenter"))
    refused(admin_url, "segmenter", "UPDATE iam.api_keys SET revoked_at = NULL")
    refused(admin_url, "segmenter", "SELECT * FROM iam.sign_in_attempts")


def test_the_vault_lets_every_service_read_and_add_keys_but_no_service_change_or_delete_one(
    admin_url: str,
) -> None:
    add = "INSERT INTO vault.account_keys (subject, kek_id, wrapped_key) VALUES ('{0}', 'm1', '\\x00'::bytea)"
    for service in SERVICES:
        as_role(admin_url, service, lambda c, s=service: c.execute(text(add.format(f"A-{s}"))))
    assert as_role(
        admin_url, "escalation", lambda c: c.scalar(text("SELECT count(*) FROM vault.account_keys"))
    ) == len(SERVICES)
    # erasure and re-wrapping are the migrator's: a compromised service cannot destroy or swap a key
    refused(admin_url, "console", "UPDATE vault.account_keys SET wrapped_key = NULL, kek_id = NULL")
    refused(admin_url, "segmenter", "DELETE FROM vault.account_keys")
    refused(admin_url, "segmenter", "TRUNCATE vault.account_keys")


def test_arrears_migrate_create_roles_writes_each_services_own_url(
    fresh_database_url: Callable[..., str], tmp_path: Path
) -> None:
    url = fresh_database_url("roles_cli")
    out = tmp_path / "urls.env"
    result = CliRunner().invoke(
        cli_app, ["migrate", "--database-url", url, "--create-roles", "--write-urls", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    urls = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert "database-url-escalation" in urls and "database-url-dispatcher-sms" in urls
    assert not any(
        u.split("@")[0].rsplit(":", 1)[-1] in result.output for u in urls.values()
    )  # no password shown

    async def whoami(u: str) -> str:
        engine = make_engine(u)
        try:
            async with engine.connect() as c:
                return str(await c.scalar(text("SELECT current_user")))
        finally:
            await engine.dispose()

    assert asyncio.run(whoami(urls["database-url-escalation"])) == "arrears_escalation"
    # run again: idempotent
    again = CliRunner().invoke(cli_app, ["migrate", "--database-url", url, "--create-roles"])
    assert again.exit_code == 0, again.output
