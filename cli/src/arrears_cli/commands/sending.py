"""`arrears sending halt|resume|status`: the incident switch from a shell with database access — the same
halts (iam.sending_halts) and rules as the console's /admin/sending/halts. Each change is written to the
console's audit log with the actor `cli:<os user>`, in the transaction that makes it."""

from __future__ import annotations

from typing import Annotated

import typer
from arrears_shared.audit import append
from arrears_shared.control import halts
from sqlalchemy.ext.asyncio import AsyncConnection

from arrears_cli.db import DbUrl, cli_actor, run_in_transaction

sending_app = typer.Typer(help="Halt and resume sending (incident switch).", no_args_is_help=True)
AUDIT_SCHEMA = "console"  # the console hosts the halts API; its audit log records every halt and resume


def _show(h: halts.Halt) -> str:
    line = f"{h.halt_id}  {h.label:<28} since {h.set_at.isoformat(timespec='seconds')}  by {h.set_by}: {h.reason}"
    if h.cleared_at:
        line += (
            f"  [resumed {h.cleared_at.isoformat(timespec='seconds')} by {h.cleared_by}: {h.clear_reason}]"
        )
    return line


def _scope(all_: bool, channel: str | None, campaign: str | None) -> tuple[str, str | None]:
    chosen = [s for s, on in (("all", all_), ("channel", channel), ("campaign", campaign)) if on]
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --all, --channel CHANNEL, --campaign CAMPAIGN")
    return chosen[0], channel or campaign


@sending_app.command("halt")
def halt(
    reason: Annotated[str, typer.Option("--reason", help="Why (in the audit log and on the ops page)")],
    all_: Annotated[bool, typer.Option("--all", help="Halt all sending")] = False,
    channel: Annotated[str | None, typer.Option(help="Halt one channel (sms, email, …)")] = None,
    campaign: Annotated[str | None, typer.Option(help="Halt one campaign (its id)")] = None,
    database_url: DbUrl = None,
) -> None:
    """Stop sending now: once this returns, no dispatcher takes a matching notice; they stay queued."""
    scope, target = _scope(all_, channel, campaign)

    async def work(conn: AsyncConnection) -> halts.Halt:
        h = await halts.set_halt(conn, scope, target, reason=reason, by=cli_actor())
        await append(
            conn,
            AUDIT_SCHEMA,
            actor=cli_actor(),
            role="admin",
            action="sending.halt",
            entity="sending_halt",
            entity_id=h.halt_id,
            after=h.summary(),
            reason=reason,
        )
        return h

    try:
        h = run_in_transaction(database_url, work)
    except halts.AlreadyHalted as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(1) from None
    except halts.HaltError as e:
        raise typer.BadParameter(str(e)) from None
    typer.echo(f"HALTED {_show(h)}")


@sending_app.command("resume")
def resume(
    reason: Annotated[str, typer.Option("--reason", help="Why sending may go on")],
    halt_id: Annotated[str | None, typer.Argument(help="The halt's id (see `status`)")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Resume the halt of all sending")] = False,
    channel: Annotated[str | None, typer.Option(help="Resume the halt of this channel")] = None,
    campaign: Annotated[str | None, typer.Option(help="Resume the halt of this campaign")] = None,
    database_url: DbUrl = None,
) -> None:
    """Lift a halt (by id, or by its scope): held notices go again, through every check."""
    scope: tuple[str, str | None] | None = None if halt_id else _scope(all_, channel, campaign)

    async def work(conn: AsyncConnection) -> halts.Halt | None:
        hid = halt_id
        if scope is not None:
            found = await halts.find_active(conn, scope[0], scope[1] or "")
            hid = found.halt_id if found else None
        if hid is None:
            return None
        h = await halts.clear_halt(conn, hid, reason=reason, by=cli_actor())
        if h is not None:
            await append(
                conn,
                AUDIT_SCHEMA,
                actor=cli_actor(),
                role="admin",
                action="sending.resume",
                entity="sending_halt",
                entity_id=h.halt_id,
                before=h.summary(),
                after={"cleared": True},
                reason=reason,
            )
        return h

    try:
        h = run_in_transaction(database_url, work)
    except halts.HaltError as e:
        raise typer.BadParameter(str(e)) from None
    if h is None:
        typer.echo("no such active halt", err=True)
        raise typer.Exit(1)
    typer.echo(f"RESUMED {h.label}")


@sending_app.command("status")
def status(
    history: Annotated[bool, typer.Option("--history", help="Also list recent resumed halts")] = False,
    database_url: DbUrl = None,
) -> None:
    """The halts in force (exit code 0 either way; 'sending' when none)."""

    async def work(conn: AsyncConnection) -> tuple[list[halts.Halt], list[halts.Halt]]:
        return await halts.active(conn), (await halts.recent(conn) if history else [])

    active, recent = run_in_transaction(database_url, work)
    if not active:
        typer.echo("sending: no halt in force")
    for h in active:
        typer.echo(f"HALTED {_show(h)}")
    for h in recent:
        if h.cleared_at:
            typer.echo(f"was    {_show(h)}")


def register(app: typer.Typer) -> None:
    app.add_typer(sending_app, name="sending")
