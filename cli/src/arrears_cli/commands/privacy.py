"""`arrears erase ACCOUNT`, `arrears export ACCOUNT`, `arrears vault rewrap`, `arrears vault seal-existing`: the data subject's rights and the
vault's upkeep, from a shell with the migrator's database URL (runtime roles may not change a key).

Erasure destroys the account's data key (crypto-shredding: every sealed copy of its personal data, in any
table, outbox, topic or dead-letter topic, is unreadable at once; running services forget a cached key
within `ARREARS_VAULT_KEY_CACHE_S`). It is written to the console's audit log as `cli:<os user>` in the same
transaction, and cannot be undone."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from arrears_shared.audit import append
from arrears_shared.db.engine import make_engine
from arrears_shared.settings import DatabaseSettings
from arrears_shared.vault import subject_access
from arrears_shared.vault.backfill import seal_existing
from sqlalchemy.ext.asyncio import AsyncConnection

from arrears_cli.db import DbUrl, cli_actor, run_in_transaction

AUDIT_SCHEMA = "console"
vault_app = typer.Typer(help="The personal-data vault: master-key rotation.", no_args_is_help=True)


def erase(
    account: Annotated[str, typer.Argument(help="Account id")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (e.g. the request's ticket); no personal data")
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    database_url: DbUrl = None,
) -> None:
    """Erase an account's sealed personal data by destroying its key (irreversible; audited)."""
    if not yes:
        typer.confirm(f"Erase every piece of personal data of {account}? This cannot be undone", abort=True)

    async def work(conn: AsyncConnection) -> bool:
        erased = await subject_access.erase(conn, account, cli_actor())
        if erased:
            await append(
                conn,
                AUDIT_SCHEMA,
                actor=cli_actor(),
                role="admin",
                action="account.erase",
                entity="account",
                entity_id=account,
                after={"key": "destroyed"},
                reason=reason,
            )
        return erased

    if run_in_transaction(database_url, work):
        typer.echo(
            f"{account}: key destroyed; its sealed personal data (every service's tables, outboxes, topics and "
            "dead letters) is unreadable, no search finds it and nothing is sent to it. What was never sealed "
            "(rows from before the upgrade, unmatched replies) is not: docs/runbooks.md"
        )
    else:
        typer.echo(f"{account}: already erased")


def export(
    account: Annotated[str, typer.Argument(help="Account id")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the report here (default: stdout)")
    ] = None,
    database_url: DbUrl = None,
) -> None:
    """Subject-access report: everything every service holds on the account, decrypted, as JSON (audited)."""

    async def work(conn: AsyncConnection) -> dict:
        doc = await subject_access.report(conn, account)
        await append(
            conn,
            AUDIT_SCHEMA,
            actor=cli_actor(),
            role="admin",
            action="account.export",
            entity="account",
            entity_id=account,
            after={"tables": sum(len(t) for t in doc["data"].values())},
        )
        return doc

    text = json.dumps(run_in_transaction(database_url, work), indent=2, ensure_ascii=False)
    if output is None:
        typer.echo(text)
    else:
        fd = output.open("w", encoding="utf-8")
        with fd:
            fd.write(text + "\n")
        output.chmod(0o600)
        typer.echo(f"written to {output}", err=True)


@vault_app.command()
def rewrap(database_url: DbUrl = None) -> None:
    """Re-wrap every data key with the current master key (after moving the old one to
    ARREARS_VAULT_PREVIOUS_MASTER_KEYS); then the old key can be retired."""
    n = run_in_transaction(database_url, subject_access.rewrap)
    typer.echo(f"{n} data key(s) re-wrapped")


@vault_app.command("seal-existing")
def seal_existing_command(
    batch: Annotated[int, typer.Option("--batch", min=1, help="Rows per transaction")] = 1000,
    database_url: DbUrl = None,
) -> None:
    """Seal the personal data of rows written before the upgrade that introduced sealing (and fill their blind
    indexes), so that erasure reaches them. Idempotent and resumable: one transaction per batch."""

    async def go() -> dict[str, int]:
        engine = make_engine(database_url or DatabaseSettings().database_url.get_secret_value())
        try:
            async with engine.connect() as conn:
                return await seal_existing(conn, batch)
        finally:
            await engine.dispose()

    counts = asyncio.run(go())
    for column, n in counts.items():
        typer.echo(f"{column}: {n}")
    typer.echo(f"total: {sum(counts.values())} row(s) sealed")


def register(app: typer.Typer) -> None:
    app.command()(erase)
    app.command()(export)
    app.add_typer(vault_app, name="vault")
