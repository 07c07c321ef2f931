"""`arrears keys create|list|rotate|revoke|revoke-all|locks|unlock`: API keys from a shell with database
access (the same store and rules as the console's /admin/api-keys and /admin/security). Each change is written
to the console's audit log with the actor `cli:<os user>`. `revoke-all --new-admin NAME` is the break-glass
path: every key revoked and a fresh admin key printed, in one transaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import arrears_shared.auth.keys as keys
import arrears_shared.auth.lockout as lockout
import typer
from arrears_shared.audit import append
from arrears_shared.auth.lockout import security_event
from arrears_shared.auth.roles import ROLES
from sqlalchemy.ext.asyncio import AsyncConnection

from arrears_cli.db import DbUrl, cli_actor, run_in_transaction

keys_app = typer.Typer(
    help="API keys: create, list, rotate, revoke, revoke all; locked sign-ins.", no_args_is_help=True
)
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


@keys_app.command("revoke-all")
def revoke_all(
    reason: Annotated[str, typer.Option("--reason", help="Why (in the audit log)")],
    keep: Annotated[
        list[str] | None, typer.Option("--keep", help="Key id or name to leave active; repeatable")
    ] = None,
    new_admin: Annotated[
        str | None,
        typer.Option(
            help="Break-glass: in the same transaction, create a new admin key with this name and print it"
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
    database_url: DbUrl = None,
) -> None:
    """Revoke every API key at once and end the console sessions opened with them (incident response)."""
    if not yes:
        typer.confirm("Every API key stops working now. Continue?", abort=True)

    async def work(conn: AsyncConnection) -> tuple[int, int, list[str], tuple[keys.KeyInfo, str] | None]:
        kept: list[str] = []
        for ref in keep or []:
            found = await keys.find_active(conn, ref)
            if found is None:
                raise typer.BadParameter(f"no active key {ref!r} to keep")
            kept.append(found.key_id)
        revoked, ended = await keys.revoke_all(conn, keep=tuple(kept))
        await append(
            conn,
            AUDIT_SCHEMA,
            actor=cli_actor(),
            role="admin",
            action="api_key.revoke_all",
            entity="api_key",
            entity_id="*",
            after={"revoked": [k.key_id for k in revoked], "kept": kept, "sessions_ended": ended},
            reason=reason,
        )
        await security_event(
            conn, "keys_revoked_all", cli_actor(), role="admin", detail={"revoked": len(revoked)}
        )
        made = None
        if new_admin:
            made = await keys.create(conn, name=new_admin, roles=("admin",), created_by=cli_actor())
            await _audit(
                conn, "api_key.create", made[0].key_id, name=new_admin, roles=["admin"], break_glass=True
            )
        return len(revoked), ended, kept, made

    try:
        n, ended, kept, made = run_in_transaction(database_url, work)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    typer.echo(
        f"revoked {n} keys; {ended} console sessions ended" + (f"; kept {', '.join(kept)}" if kept else "")
    )
    if made:
        typer.echo(_show(made[0]))
        typer.echo(made[1])
        typer.echo("Break-glass admin key: store it now, it is not shown again.", err=True)


@keys_app.command("locks")
def locks(database_url: DbUrl = None) -> None:
    """Keys locked after repeated failed sign-ins."""
    found = run_in_transaction(database_url, lockout.locked_keys)
    if not found:
        typer.echo("no key is locked")
    for lk in found:
        until = lk.locked_until.isoformat(timespec="seconds") if lk.locked_until else "an admin unlocks it"
        locked_at = lk.locked_at.isoformat(timespec="seconds") if lk.locked_at else ""
        typer.echo(
            f"{lk.key_id}  {lk.name or '?':<24} {lk.failures} failures  locked {locked_at}  until {until}"
        )


@keys_app.command("unlock")
def unlock(
    key: Annotated[str, typer.Argument(help="Key id or name")],
    reason: Annotated[str, typer.Option("--reason", help="Why it may sign in again")],
    database_url: DbUrl = None,
) -> None:
    """Unlock a key locked after repeated failed sign-ins (audited)."""

    async def work(conn: AsyncConnection) -> str | None:
        found = await keys.find_active(conn, key)
        key_id = found.key_id if found else key
        before = await lockout.unlock(conn, key_id, by=cli_actor())
        if before is None:
            return None
        await append(
            conn,
            AUDIT_SCHEMA,
            actor=cli_actor(),
            role="admin",
            action="sign_in.unlock",
            entity="api_key",
            entity_id=key_id,
            before={"failures": before.failures, "locked_at": before.locked_at, "until": before.locked_until},
            after={"locked": False},
            reason=reason,
        )
        return key_id

    done = run_in_transaction(database_url, work)
    if done is None:
        typer.echo(f"key {key!r} is not locked", err=True)
        raise typer.Exit(1)
    typer.echo(f"unlocked {done}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
