"""`arrears scoring train|run|models`: the scoring service's models and daily run, on its database.

- `train` trains the payment, drop-out and recovery models on the service's own history (or, `--simulated`,
  a demo model on simulated customers) and activates each only if it beats the active one on the latest
  window;
- `run` runs a day's scoring now (default today, UTC): once per day, a day that ran publishes nothing;
- `models` lists the model versions with their metrics and activation decision.

Each change is in the scoring service's audit log as `cli:<os user>`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Annotated, TypeVar

import typer
from arrears_shared.audit import append
from arrears_shared.db.engine import make_engine
from arrears_shared.settings import DatabaseSettings
from sqlalchemy.ext.asyncio import AsyncEngine

from arrears_cli.db import DbUrl, cli_actor

scoring_app = typer.Typer(help="Scoring models and the daily scoring run.", no_args_is_help=True)
SCHEMA = "scoring"
T = TypeVar("T")


def _with_engine(url: str | None, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    async def go() -> T:
        engine = make_engine(url or DatabaseSettings().database_url.get_secret_value())
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    return asyncio.run(go())


@scoring_app.command()
def train(
    database_url: DbUrl = None,
    simulated: Annotated[bool, typer.Option(help="Demo: train on simulated customers")] = False,
    accounts: Annotated[int, typer.Option(help="--simulated: how many customers")] = 5000,
) -> None:
    """Train the three models; each is activated only if it beats the active one on the latest window."""
    from arrears_scoring.jobs.train import train_on_history, train_on_simulation
    from arrears_scoring.models.store import ModelView

    async def work(engine: AsyncEngine) -> list[ModelView]:
        now = datetime.now(UTC)
        if simulated:
            made = await train_on_simulation(engine, SCHEMA, now=now, by=cli_actor(), accounts=accounts)
        else:
            made = await train_on_history(engine, SCHEMA, now=now, by=cli_actor())
        async with engine.begin() as conn:
            await append(
                conn, SCHEMA, actor=cli_actor(), role="admin", action="models.train", entity="model",
                entity_id=",".join(m.version for m in made),
                after={m.version: {"active": m.active, "decision": m.decision} for m in made},
            )  # fmt: skip
        return made

    for m in _with_engine(database_url, work):
        typer.echo(f"{m.version:<40} {'active' if m.active else 'stored':<7} {m.decision}")


@scoring_app.command()
def run(
    database_url: DbUrl = None,
    day: Annotated[str | None, typer.Option(help="UTC day (YYYY-MM-DD); default today")] = None,
) -> None:
    """Run a day's scoring now (once per day: a day that ran publishes nothing)."""
    from arrears_scoring.jobs.daily import RunResult, run_day
    from arrears_shared.stream.transaction import transaction

    when = date.fromisoformat(day) if day else datetime.now(UTC).date()

    async def work(engine: AsyncEngine) -> RunResult:
        async with transaction(engine, SCHEMA, "scoring") as tx:
            result = await run_day(tx, when, now=datetime.now(UTC), by=cli_actor())
            await append(
                tx.conn, SCHEMA, actor=cli_actor(), role="admin", action="scoring.run", entity="scoring_day",
                entity_id=when.isoformat(), after={"ran": result.ran, "published": result.published},
            )  # fmt: skip
            return result

    r = _with_engine(database_url, work)
    typer.echo(
        f"{r.day}: {'ran' if r.ran else 'not run'} accounts={r.accounts} published={r.published} {r.detail}"
    )


@scoring_app.command()
def models(database_url: DbUrl = None) -> None:
    """List the model versions (newest first) with their metrics."""
    from arrears_scoring.models.store import ModelView, list_models

    async def work(engine: AsyncEngine) -> list[ModelView]:
        async with engine.connect() as conn:
            return await list_models(conn, SCHEMA)

    for m in _with_engine(database_url, work):
        metrics = {k: v for k, v in m.metrics.items() if k in ("auc", "brier", "mae", "r2", "n")}
        typer.echo(
            f"{m.version:<40} {'active' if m.active else '':<6} {m.source:<9} test {m.test_from}..{m.test_to} "
            f"{json.dumps(metrics)}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(scoring_app, name="scoring")
