"""`arrears migrate`: apply the platform schemas' (`iam`) and every service's Alembic migrations (each
service also does it at start-up when its credential may; a service's runtime role may not).

`--create-roles` first creates or updates every service's two roles (arrears_shared.db.roles: a NOLOGIN
schema owner the migrations run as, and a LOGIN runtime role) with the admin URL given; `--write-urls FILE`
also sets a new random password per runtime role and writes `database-url-<service>=<URL>` lines to FILE
(mode 0600) for `kubectl create secret generic ... --from-env-file` (deploy/README.md). Passwords are never
printed.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer
from arrears_shared import topology
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import PLATFORM_SCHEMAS, downgrade, upgrade
from arrears_shared.db.roles import ensure_roles, new_passwords, role_url, runtime_role
from arrears_shared.settings import DatabaseSettings


async def _create_roles(url: str, passwords: dict[str, str]) -> None:
    engine = make_engine(url, pool_size=1)
    try:
        await ensure_roles(engine, topology.services(), passwords)
    finally:
        await engine.dispose()


def _write_urls(path: Path, url: str, passwords: dict[str, str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        for svc, password in passwords.items():
            fh.write(f"database-url-{svc}={role_url(url, runtime_role(svc), password)}\n")


def migrate(
    service: Annotated[
        list[str] | None,
        typer.Option("--service", "-s", help="Only these services (or platform schemas, e.g. iam)"),
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(envvar="ARREARS_DATABASE_URL", help="PostgreSQL URL")
    ] = None,
    downgrade_to: Annotated[
        str | None,
        typer.Option(
            "--downgrade-to",
            help="Undo this release's migrations of ONE --service down to this revision (before rolling "
            "back to the release whose newest revision it is; see docs/upgrades.md)",
        ),
    ] = None,
    create_roles: Annotated[
        bool,
        typer.Option(
            "--create-roles",
            help="First create/update each service's owner and runtime roles (needs an admin URL: a "
            "superuser or a CREATEROLE role)",
        ),
    ] = False,
    write_urls: Annotated[
        Path | None,
        typer.Option(
            help="With --create-roles: give each runtime role a new random password and write "
            "database-url-<service>=<URL> lines to this file (mode 0600)"
        ),
    ] = None,
    allow_ahead: Annotated[
        bool,
        typer.Option(
            "--allow-ahead",
            help="Exit 0 when a schema is at a revision newer than this release knows (a rollback after "
            "an expand migration); without it that is reported and exits 3",
        ),
    ] = False,
) -> None:
    """Migrate the platform schemas (iam: API keys, sessions) and the services' schemas to head (idempotent;
    safe to run beside running services)."""
    url = database_url or DatabaseSettings().database_url.get_secret_value()
    if write_urls is not None and not create_roles:
        raise typer.BadParameter("--write-urls needs --create-roles")
    if create_roles:
        passwords = new_passwords(topology.services()) if write_urls is not None else {}
        asyncio.run(_create_roles(url, passwords))
        if write_urls is not None:
            _write_urls(write_urls, url, passwords)
            typer.echo(f"roles: created/updated; runtime URLs written to {write_urls}")
        else:
            typer.echo("roles: created/updated (passwords unchanged)")
    if downgrade_to is not None:
        if not service or len(service) != 1:
            raise typer.BadParameter("--downgrade-to needs exactly one --service")
        downgrade(url, service[0], downgrade_to)
        typer.echo(f"{service[0]}: at {downgrade_to}")
        return
    ahead = []
    for s in service or (*PLATFORM_SCHEMAS, *topology.services()):
        if upgrade(url, s) == "ahead":
            ahead.append(s)
            typer.echo(f"{s}: ahead of this release (migrated by a newer one; left as it is)")
        else:
            typer.echo(f"{s}: at head")
    if ahead and not allow_ahead:
        typer.echo(
            f"schemas ahead of this release: {', '.join(ahead)} (pass --allow-ahead to accept)", err=True
        )
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)
