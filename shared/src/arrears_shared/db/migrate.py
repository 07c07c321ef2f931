"""Alembic migrations, one Postgres schema (and one version table) per service.

Each service package has a `migrations/` folder with a two-line `env.py` calling `run_env()` below and its
revisions in `migrations/versions/`. Migrations take a transaction-level advisory lock on the schema, so
several replicas starting at once migrate exactly once.

Where the per-service roles exist (db/roles.py), migrations run as the schema's owner role (`SET ROLE` by a
member, e.g. the admin running `arrears migrate`), and every run ends by re-applying the runtime role's
grants and the audit log's protections. A service connected with its runtime role cannot migrate: at start-up
it finds its schema at head and goes on, or stops with a message naming `arrears migrate`.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import logging
from pathlib import Path
from typing import Literal

from alembic import command, context
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from alembic.util import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from .. import topology
from ..audit.tables import harden_audit_log, has_audit_log
from ..settings import to_asyncpg_url
from .engine import schema_for
from .roles import act_as_owner, grant_runtime

log = logging.getLogger(__name__)


# Platform schemas that belong to no single service: name -> package holding `migrations/`.
PLATFORM_SCHEMAS: dict[str, str] = {"iam": "arrears_shared.auth", "vault": "arrears_shared.vault"}


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


# Platform schemas every service's schema depends on: migrated first when a service is migrated to head.
# every service seals personal data with the vault's keys; every service authenticates against iam, and
# every dispatcher reads its sending halts in each claim transaction
SERVICE_DEPENDS_ON: tuple[str, ...] = ("vault", "iam")


def upgrade(
    url: str, service: str, revision: str = "head", *, dependencies: bool = True
) -> Literal["migrated", "ahead"]:
    """Migrate one service's schema to `revision`. Blocking; call via `asyncio.to_thread` from async code.

    A schema already at a revision this release does not know was migrated by a newer release (a rollback
    after an expand migration, or old replicas beside new ones in a rolling upgrade): the release starts
    on it with a warning instead of crash-looping, as expand migrations leave the schema usable by the
    release before them (docs/upgrades.md). Only the schema's *own* revision being unknown counts as
    ahead; a missing revision anywhere else (an incomplete release) still raises. Returns "ahead" then,
    else "migrated" (also when there was nothing to do)."""
    if dependencies and service not in PLATFORM_SCHEMAS and revision == "head":
        for platform in SERVICE_DEPENDS_ON:
            upgrade(url, platform)
    cfg = alembic_config(url, service)
    if revision == "head":
        state = _nothing_to_do(cfg, url, service)
        if state is not None:
            return state
    try:
        command.upgrade(cfg, revision)
    except CommandError as e:
        cause = e.__cause__
        if (
            revision != "head"
            or not isinstance(cause, ResolutionError)
            or cause.argument not in _stored_revisions(url, service)
        ):
            raise
        log.warning(
            "schema ahead of this release: starting on it unmigrated",
            extra={"service": service, "revision": cause.argument},
        )
        return "ahead"
    log.info("migrated", extra={"service": service, "revision": revision})
    return "migrated"


def _stored_revisions(url: str, service: str) -> set[str]:
    """The revision(s) a service's version table holds (empty without one)."""
    schema = schema_for(service)

    async def read() -> set[str]:
        engine = create_async_engine(to_asyncpg_url(url), hide_parameters=True)
        try:
            async with engine.connect() as conn:
                if await conn.scalar(text(f"SELECT to_regclass('{schema}.alembic_version')")) is None:
                    return set()
                return set(
                    (
                        await conn.execute(text(f'SELECT version_num FROM "{schema}".alembic_version'))
                    ).scalars()
                )
        finally:
            await engine.dispose()

    return asyncio.run(read())


class MigrationNeeded(RuntimeError):
    """The schema is behind this release and this credential may not migrate it."""


def _nothing_to_do(cfg: Config, url: str, service: str) -> Literal["migrated", "ahead"] | None:
    """For a credential that cannot migrate (a service's runtime role): "migrated" when the schema is at
    head, "ahead" when a newer release migrated it (see `upgrade`); raises `MigrationNeeded` when it is
    behind. None when the credential may migrate (Alembic decides)."""
    schema = schema_for(service)

    async def probe() -> tuple[bool, set[str]]:
        engine = create_async_engine(to_asyncpg_url(url), hide_parameters=True)
        try:
            async with engine.connect() as conn:
                may = await conn.scalar(
                    text(
                        "SELECT to_regnamespace(:s) IS NULL AND has_database_privilege(current_database(), 'CREATE') "
                        "OR to_regnamespace(:s) IS NOT NULL AND has_schema_privilege(:s, 'CREATE')"
                    ),
                    {"s": schema},
                )
                if may or await conn.scalar(text(f"SELECT to_regclass('{schema}.alembic_version')")) is None:
                    return bool(may), set()
                rows = await conn.execute(text(f'SELECT version_num FROM "{schema}".alembic_version'))
                return False, {r[0] for r in rows}
        finally:
            await engine.dispose()

    may_migrate, current = asyncio.run(probe())
    if may_migrate:
        return None
    script = ScriptDirectory.from_config(cfg)
    heads = set(script.get_heads())
    known = {rev.revision for rev in script.walk_revisions()}
    if current == heads:
        return "migrated"
    if current and not current <= known:
        log.warning("schema ahead of this release: starting on it unmigrated", extra={"service": service})
        return "ahead"
    raise MigrationNeeded(
        f"schema {schema} is at {sorted(current) or 'nothing'} but this release needs {sorted(heads)}, and "
        "this database role may not migrate it: run `arrears migrate` as the migrator (docs/security.md)"
    )


def downgrade(url: str, service: str, revision: str) -> None:
    """Undo one service's migrations down to `revision` (an operator's rollback step). Blocking."""
    command.downgrade(alembic_config(url, service), revision)
    log.info("downgraded", extra={"service": service, "revision": revision})


def upgrade_all(url: str) -> None:
    for service in (*PLATFORM_SCHEMAS, *topology.services()):
        upgrade(url, service, dependencies=False)  # the platform schemas come first


def run_env() -> None:
    """Body of every service's `migrations/env.py`."""
    cfg = context.config
    url: str = cfg.attributes["url"]
    schema: str = cfg.attributes["schema"]

    def do_run(conn: Connection) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"arrears-migrate-{schema}"})
        act_as_owner(conn, schema)
        context.configure(
            connection=conn,
            version_table_schema=schema,
            include_schemas=True,
            transaction_per_migration=False,
        )
        with context.begin_transaction():
            context.run_migrations()
        after_migrations(conn, schema)

    async def main() -> None:
        engine = create_async_engine(to_asyncpg_url(url), hide_parameters=True)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(do_run)
        finally:
            await engine.dispose()

    asyncio.run(main())


def after_migrations(conn: Connection, schema: str) -> None:
    """The shared library's part of every schema, kept current after each run: the audit log's
    protections and the runtime role's grants."""
    grant_runtime(conn, schema, topology.services())
    if conn.execute(text(has_audit_log(schema))).scalar():
        for stmt in harden_audit_log(schema):
            conn.execute(text(stmt))
