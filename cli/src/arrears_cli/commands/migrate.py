"""`arrears migrate`: apply the platform schemas' (`iam`) and every service's Alembic migrations (each
service also does it at start-up)."""

from __future__ import annotations

from typing import Annotated

import typer
from arrears_shared import topology
from arrears_shared.db.migrate import PLATFORM_SCHEMAS, downgrade, upgrade
from arrears_shared.settings import DatabaseSettings


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
) -> None:
    """Migrate the platform schemas (iam: API keys, sessions) and the services' schemas to head (idempotent;
    safe to run beside running services)."""
    url = database_url or DatabaseSettings().database_url.get_secret_value()
    if downgrade_to is not None:
        if not service or len(service) != 1:
            raise typer.BadParameter("--downgrade-to needs exactly one --service")
        downgrade(url, service[0], downgrade_to)
        typer.echo(f"{service[0]}: at {downgrade_to}")
        return
    for s in service or (*PLATFORM_SCHEMAS, *topology.services()):
        upgrade(url, s)
        typer.echo(f"{s}: at head")


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)
