"""Every service's migrations, and those of the platform schemas every service shares (`iam`: API keys and
sessions), go up, all the way down and up again on a real PostgreSQL: each downgrade undoes its upgrade
(an operator rolling back a release relies on it)."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command
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
