"""`arrears audit verify`: recompute escalation's hash-chained audit log and report any edited, deleted or
truncated entry (exit status 1)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from arrears_escalation.audit.service import VerifyReport, verify
from arrears_shared.db.engine import make_engine
from arrears_shared.settings import DatabaseSettings

audit_app = typer.Typer(help="The audit log of manual actions (escalation).", no_args_is_help=True)


async def _verify(url: str, anchor: tuple[int, str] | None) -> VerifyReport:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await verify(conn, anchor)
    finally:
        await engine.dispose()


def _anchor(value: str | None) -> tuple[int, str] | None:
    if not value:
        return None
    seq, _, digest = value.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise typer.BadParameter("expected <seq>:<sha256 hex>, as printed by a previous verify")
    return int(seq), digest.lower()


@audit_app.command("verify")
def verify_command(
    database_url: Annotated[
        str | None, typer.Option(envvar="ARREARS_DATABASE_URL", help="PostgreSQL URL (escalation's database)")
    ] = None,
    anchor: Annotated[
        str | None,
        typer.Option(help="A head `<seq>:<hash>` recorded earlier: detects deleted newest entries too"),
    ] = None,
) -> None:
    """Verify every entry's hash and the chain; print the head to keep as the next anchor."""
    url = database_url or DatabaseSettings().database_url.get_secret_value()
    report = asyncio.run(_verify(url, _anchor(anchor)))
    for problem in report.problems:
        typer.echo(f"TAMPERED: {problem}", err=True)
    typer.echo(f"entries: {report.entries}")
    typer.echo(f"head: {report.head_seq}:{report.head_hash}")
    if not report.ok:
        typer.echo(f"audit log FAILED verification ({len(report.problems)} problem(s))", err=True)
        raise typer.Exit(1)
    typer.echo("audit log OK")


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
