"""Every service's migrations, and those of the platform schemas every service shares (`iam`: API keys and
sessions), go up, all the way down and up again on a real PostgreSQL: each downgrade undoes its upgrade
(an operator rolling back a release relies on it)."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from arrears_cli.__main__ import app as cli_app
from arrears_shared import topology
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import PLATFORM_SCHEMAS, alembic_config, upgrade
from auth_support import issue_key
from sqlalchemy import text
from typer.testing import CliRunner


async def _tables(url: str, schema: str) -> list[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as c:
            rows = await c.execute(
                text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                {"s": schema},
            )
            return sorted(rows.scalars())
    finally:
        await engine.dispose()


@pytest.mark.parametrize("service", [*PLATFORM_SCHEMAS, *topology.services()])
def test_migrations_go_down_and_up_again(fresh_database_url, service: str) -> None:  # type: ignore[no-untyped-def]
    url = fresh_database_url("mig")
    upgrade(url, service)
    cfg = alembic_config(url, service)
    command.downgrade(cfg, "base")
    schema = cfg.attributes["schema"]
    left = asyncio.run(_tables(url, schema))
    assert set(left) <= {"alembic_version"}, f"{service}: downgrade to base left {left}"
    upgrade(url, service)
    assert len(asyncio.run(_tables(url, schema))) > 1


def test_arrears_migrate_migrates_the_platform_schemas_too(fresh_database_url) -> None:  # type: ignore[no-untyped-def]
    """`arrears migrate` on an empty database leaves it ready for `arrears keys create`: `iam` included."""
    url = fresh_database_url("mig_cli")
    result = CliRunner().invoke(cli_app, ["migrate", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "iam: at head", result.output
    assert {"api_keys", "sessions"} <= set(asyncio.run(_tables(url, "iam")))
    assert issue_key(url, "admin", migrate=False).startswith("ark_")


def test_a_schema_migrated_by_a_newer_release_starts_with_a_warning(fresh_database_url, caplog) -> None:  # type: ignore[no-untyped-def]
    """Rolling back after an expand migration: the database is at a revision the running release does not
    know. The release starts on it (warning) instead of crash-looping; a real migration error still raises."""
    url = fresh_database_url("ahead")
    service = "escalation"
    upgrade(url, service)
    schema = alembic_config(url, service).attributes["schema"]

    async def set_version(rev: str) -> None:
        engine = make_engine(url)
        try:
            async with engine.begin() as c:
                await c.execute(text(f"UPDATE {schema}.alembic_version SET version_num = :r"), {"r": rev})
        finally:
            await engine.dispose()

    asyncio.run(set_version("9999_from_the_next_release"))
    with caplog.at_level("WARNING", logger="arrears_shared.db.migrate"):
        assert upgrade(url, service) == "ahead"
    assert any("schema ahead of this release" in r.getMessage() for r in caplog.records)
    out = CliRunner().invoke(cli_app, ["migrate", "-s", service, "--database-url", url])
    assert out.exit_code == 3 and "ahead of this release" in out.output, out.output  # a CD job notices
    out = CliRunner().invoke(cli_app, ["migrate", "-s", service, "--allow-ahead", "--database-url", url])
    assert out.exit_code == 0, out.output
    with pytest.raises(Exception, match="Can't locate revision"):
        upgrade(url, service, "0001_does_not_exist")  # an explicit target this release lacks is an error


def test_cli_downgrades_one_service_for_a_rollback(fresh_database_url) -> None:  # type: ignore[no-untyped-def]
    url = fresh_database_url("down")
    cfg = alembic_config(url, "escalation")
    upgrade(url, "escalation")
    revisions = [r.revision for r in ScriptDirectory.from_config(cfg).walk_revisions()]  # newest first
    both = CliRunner().invoke(cli_app, ["migrate", "--downgrade-to", revisions[1], "--database-url", url])
    assert both.exit_code != 0 and "exactly one --service" in both.output
    out = CliRunner().invoke(
        cli_app,
        ["migrate", "-s", "escalation", "--downgrade-to", revisions[1], "--database-url", url],
    )
    assert out.exit_code == 0, out.output

    async def version() -> str:
        engine = make_engine(url)
        try:
            async with engine.connect() as c:
                schema = cfg.attributes["schema"]
                return (
                    await c.execute(text(f"SELECT version_num FROM {schema}.alembic_version"))
                ).scalar_one()
        finally:
            await engine.dispose()

    assert asyncio.run(version()) == revisions[1]
