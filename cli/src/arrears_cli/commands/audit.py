"""`arrears audit verify`: recompute every service's keyed hash chain (arrears_shared.audit; needs the audit
keys in `ARREARS_AUDIT_HMAC_KEY` / `ARREARS_AUDIT_HMAC_PREVIOUS_KEYS`) and report any edited, deleted, forged
or truncated entry (exit status 1). Heads logged by the hourly check (`audit chain head`) serve as anchors."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from arrears_shared.audit import VerifyReport, verify
from arrears_shared.db.engine import make_engine
from arrears_shared.settings import DatabaseSettings
from sqlalchemy import text

audit_app = typer.Typer(
    help="The audit logs of every service's state-changing API calls.", no_args_is_help=True
)


async def audited_schemas(conn: object) -> list[str]:
    rows = await conn.execute(  # type: ignore[attr-defined]
        text("SELECT table_schema FROM information_schema.tables WHERE table_name = 'audit_log' ORDER BY 1")
    )
    return [r[0] for r in rows]


async def _verify(url: str, anchors: dict[str, tuple[int, str]], only: str | None) -> list[VerifyReport]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            schemas = [only] if only else await audited_schemas(conn)
            return [await verify(conn, s, anchors.get(s)) for s in schemas]
    finally:
        await engine.dispose()


def _anchors(values: list[str] | None) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    for value in values or []:
        schema, _, rest = value.rpartition("=")
        seq, _, digest = rest.partition(":")
        if not schema or not seq.isdigit() or len(digest) != 64:
            raise typer.BadParameter("expected <service>=<seq>:<sha256 hex>, as printed by a previous verify")
        out[schema.replace("-", "_")] = (int(seq), digest.lower())
    return out


@audit_app.command("verify")
def verify_command(
    database_url: Annotated[
        str | None, typer.Option(envvar="ARREARS_DATABASE_URL", help="PostgreSQL URL of the platform")
    ] = None,
    anchor: Annotated[
        list[str] | None,
        typer.Option(
            help="A head `<service>=<seq>:<hash>` recorded earlier (repeatable): detects deleted newest entries"
        ),
    ] = None,
    service: Annotated[str | None, typer.Option(help="Verify only this service's log")] = None,
) -> None:
    """Verify every entry's hash and each chain; print the heads to keep as the next anchors."""
    url = database_url or DatabaseSettings().database_url.get_secret_value()
    only = service.replace("-", "_") if service else None
    reports = asyncio.run(_verify(url, _anchors(anchor), only))
    failed = 0
    for report in reports:
        for problem in report.problems:
            typer.echo(f"TAMPERED {report.schema}: {problem}", err=True)
        failed += len(report.problems)
        typer.echo(
            f"{report.schema}: entries {report.entries}, head {report.schema}={report.head_seq}:{report.head_hash}"
        )
    if failed:
        typer.echo(f"audit log FAILED verification ({failed} problem(s))", err=True)
        raise typer.Exit(1)
    typer.echo(f"audit logs OK ({len(reports)} services)")


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
