"""What the commands that work on the database share: the `--database-url` option, running one
transaction, and the actor their audit entries name."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from arrears_shared.db.engine import make_engine
from arrears_shared.settings import DatabaseSettings
from sqlalchemy.ext.asyncio import AsyncConnection

T = TypeVar("T")

DbUrl = Annotated[
    str | None, typer.Option(envvar="ARREARS_DATABASE_URL", help="PostgreSQL URL", show_envvar=True)
]


def run_in_transaction(url: str | None, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """`work(conn)` in one transaction on `url` (default: ARREARS_DATABASE_URL); committed if it returns."""

    async def go() -> T:
        engine = make_engine(url or DatabaseSettings().database_url.get_secret_value())
        try:
            async with engine.begin() as conn:
                return await work(conn)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def cli_actor() -> str:
    """`cli:<os user>`: who a command's audit entries name."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli:unknown"
