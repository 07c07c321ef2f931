"""Every service's migrations go up, all the way down and up again on a real PostgreSQL: each downgrade
undoes its upgrade (an operator rolling back a release relies on it)."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import alembic_config, upgrade
from arrears_shared.topics import SERVICES
from sqlalchemy import text


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


@pytest.mark.parametrize("service", SERVICES)
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
