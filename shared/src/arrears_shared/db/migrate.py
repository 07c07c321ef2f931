"""Alembic migrations, one Postgres schema (and one version table) per service.

Each service package has a `migrations/` folder with a two-line `env.py` calling `run_env()` below and its
revisions in `migrations/versions/`. Migrations take a transaction-level advisory lock on the schema, so
several replicas starting at once migrate exactly once.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.script.revision import ResolutionError
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from .. import topology
from ..settings import to_asyncpg_url
from .engine import schema_for

log = logging.getLogger(__name__)


# Platform schemas that belong to no single service: name -> package holding `migrations/`.
PLATFORM_SCHEMAS: dict[str, str] = {"iam": "arrears_shared.auth"}


def _package_for(service: str) -> str:
    if service in PLATFORM_SCHEMAS:
        return PLATFORM_SCHEMAS[service]
    declared = topology.find(service)
    return declared.package if declared else "arrears_" + service.replace("-", "_")


def alembic_config(url: str, service: str) -> Config:
    pkg = _package_for(service)
    location = Path(str(importlib.resources.files(pkg) / "migrations"))
    cfg = Config()
    cfg.set_main_option("script_location", str(location))
    cfg.attributes["url"] = url
    cfg.attributes["schema"] = schema_for(service)
    return cfg


def upgrade(url: str, service: str, revision: str = "head") -> None:
    """Migrate one service's schema to `revision`. Blocking; call via `asyncio.to_thread` from async code.

    A schema already at a revision this release does not know was migrated by a newer release (a rollback
    after an expand migration, or old replicas beside new ones in a rolling upgrade): the release starts
    on it with a warning instead of crash-looping, as expand migrations leave the schema usable by the
    release before them (docs/upgrades.md)."""
    try:
        command.upgrade(alembic_config(url, service), revision)
    except CommandError as e:
        if not isinstance(e.__cause__, ResolutionError) or revision != "head":
            raise
        log.warning(
            "schema ahead of this release: starting on it unmigrated",
            extra={"service": service, "error": str(e)},
        )
        return
    log.info("migrated", extra={"service": service, "revision": revision})


def downgrade(url: str, service: str, revision: str) -> None:
    """Undo one service's migrations down to `revision` (an operator's rollback step). Blocking."""
    command.downgrade(alembic_config(url, service), revision)
    log.info("downgraded", extra={"service": service, "revision": revision})


def upgrade_all(url: str) -> None:
    for service in (*PLATFORM_SCHEMAS, *topology.services()):
        upgrade(url, service)


def run_env() -> None:
    """Body of every service's `migrations/env.py`."""
    cfg = context.config
    url: str = cfg.attributes["url"]
    schema: str = cfg.attributes["schema"]

    def do_run(conn: Connection) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"arrears-migrate-{schema}"})
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=conn,
            version_table_schema=schema,
            include_schemas=True,
            transaction_per_migration=False,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def main() -> None:
        engine = create_async_engine(to_asyncpg_url(url))
        try:
            async with engine.begin() as conn:
                await conn.run_sync(do_run)
        finally:
            await engine.dispose()

    asyncio.run(main())
