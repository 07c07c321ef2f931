"""`arrears keys create|list|rotate|revoke`: API keys from a shell with database access (the same store and
rules as the console's /admin/api-keys). Each change is written to the console's audit log with the actor
`cli:<os user>`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import arrears_shared.auth.keys as keys
import typer
from arrears_shared.audit import append
from arrears_shared.auth.roles import ROLES
from sqlalchemy.ext.asyncio import AsyncConnection

from arrears_cli.db import DbUrl, cli_actor, run_in_transaction

keys_app = typer.Typer(help="API keys: create, list, rotate, revoke.", no_args_is_help=True)
AUDIT_SCHEMA = "console"  # the console hosts the keys API; its audit log records key changes


async def _audit(conn: AsyncConnection, action: str, key_id: str, **after: Any) -> None:
    await append(
        conn,
        AUDIT_SCHEMA,
        actor=cli_actor(),
        role="admin",
        action=action,
        entity="api_key",
        entity_id=key_id,
        after=after or None,
    )


def _show(k: keys.KeyInfo) -> str:
    exp = k.expires_at.isoformat(timespec="seconds") if k.expires_at else "never"
    used = k.last_used_at.isoformat(timespec="seconds") if k.last_used_at else "never"
    state = "revoked" if k.revoked_at else "active"
    return f"{k.key_id}  {k.display:<22} {k.name:<24} {','.join(k.roles):<20} expires {exp}  last used {used}  {state}"


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who or what uses the key")],
    role: Annotated[list[str], typer.Option("--role", "-r", help=f"One of {', '.join(ROLES)}; repeatable")],
    team: Annotated[str | None, typer.Option(help="Team (task queues)")] = None,
    expires_in_days: Annotated[int | None, typer.Option(min=1, help="Expire after this many days")] = None,
    database_url: DbUrl = None,
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None

    async def work(conn: AsyncConnection) -> tuple[keys.KeyInfo, str]:
        info, plaintext = await keys.create(
            conn, name=name, roles=tuple(role), team=team, expires_at=expires, created_by=cli_actor()
        )
        await _audit(conn, "api_key.create", info.key_id, name=name, roles=list(info.roles), team=team)
        return info, plaintext

    try:
        info, plaintext = run_in_transaction(database_url, work)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    typer.echo(_show(info))
    typer.echo(plaintext)
    typer.echo("Store it now: it is not shown again. Send it as 'Authorization: Bearer <key>'.", err=True)


@keys_app.command("list")
def list_(
    include_revoked: Annotated[bool, typer.Option("--all", help="Include revoked keys")] = False,
    database_url: DbUrl = None,
) -> None:
    """List keys (never their secrets)."""
    for k in run_in_transaction(database_url, lambda c: keys.list_keys(c, include_revoked=include_revoked)):
        typer.echo(_show(k))


@keys_app.command("rotate")
def rotate(
    key: Annotated[str, typer.Argument(help="Key id or name")],
    grace_minutes: Annotated[int, typer.Option(min=0, help="Minutes the old key keeps working")] = 0,
    database_url: DbUrl = None,
) -> None:
    """Replace a key by a new one with the same name and roles; print the new key once."""

    async def work(conn: AsyncConnection) -> tuple[keys.KeyInfo, str] | None:
        old = await keys.find_active(conn, key)
        if old is None:
            return None
        done = await keys.rotate(
            conn, old.key_id, rotated_by=cli_actor(), grace=timedelta(minutes=grace_minutes)
        )
        if done:
            await _audit(
                conn, "api_key.rotate", old.key_id, new_key_id=done[0].key_id, grace_s=grace_minutes * 60
            )
        return done

    try:
        done = run_in_transaction(database_url, work)
    except keys.KeyNameTaken as e:  # rotated already, its grace period still running
        typer.echo(str(e), err=True)
        raise typer.Exit(1) from None
    if done is None:
        typer.echo(f"no active key {key!r}", err=True)
        raise typer.Exit(1)
    typer.echo(_show(done[0]))
    typer.echo(done[1])


@keys_app.command("revoke")
def revoke(key: Annotated[str, typer.Argument(help="Key id or name")], database_url: DbUrl = None) -> None:
    """Revoke a key at once."""

    async def work(conn: AsyncConnection) -> str | None:
        old = await keys.find_active(conn, key)
        if old is None or not await keys.revoke(conn, old.key_id):
            return None
        await _audit(conn, "api_key.revoke", old.key_id, name=old.name)
        return old.key_id

    revoked = run_in_transaction(database_url, work)
    if revoked is None:
        typer.echo(f"no active key {key!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {revoked}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
