"""`arrears simulate --days 30`: what the segmenter would send, and what the gate would defer or suppress."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from arrears_cli.progress import ProgressOpt, progress, wanted


def register(app: typer.Typer) -> None:
    @app.command()
    def simulate(
        days: Annotated[float, typer.Option("--days", help="How far to run the virtual clock")] = 30,
        database_url: Annotated[
            str | None,
            typer.Option("--database-url", envvar="ARREARS_DATABASE_URL", help="The segmenter's PostgreSQL"),
        ] = None,
        start: Annotated[
            datetime | None, typer.Option("--start", help="Virtual start (ISO 8601, UTC); default: now")
        ] = None,
        policy: Annotated[
            Path | None,
            typer.Option("--policy", help="Try a candidate policy YAML instead of the active one"),
        ] = None,
        details: Annotated[
            bool, typer.Option("--details", help="List every notice and gate decision")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
        show_progress: ProgressOpt = None,
    ) -> None:
        """Run the dunning policy over current data with a virtual clock. Sends nothing, changes nothing."""
        from arrears_segmenter.deps import Deps
        from arrears_segmenter.schedule.models import PolicyError
        from arrears_segmenter.settings import SegmenterSettings
        from arrears_segmenter.simulate import render
        from arrears_segmenter.simulate import simulate as run
        from arrears_shared.db.engine import make_engine

        settings = (
            SegmenterSettings(service_name="segmenter", database_url=database_url)
            if database_url
            else SegmenterSettings(service_name="segmenter")
        )
        deps = Deps.from_settings(settings)
        at = None if start is None else (start if start.tzinfo else start.replace(tzinfo=UTC))

        async def go(advance: Callable[[float], None]):  # type: ignore[no-untyped-def]
            engine = make_engine(settings.async_database_url(), pool_size=1)
            done = 0.0

            def covered(fraction: float) -> None:  # progress in virtual days
                nonlocal done
                advance(fraction * days - done)
                done = fraction * days

            try:
                return await run(
                    engine,
                    deps,
                    days=days,
                    start=at,
                    policy_text=policy.read_text() if policy else None,
                    on_progress=covered,
                )
            finally:
                await engine.dispose()

        try:
            with progress(f"simulating {days:g} days", days, enabled=wanted(show_progress), unit="days") as (
                advance,
                _,
            ):
                sim = asyncio.run(go(advance))
        except PolicyError as e:
            typer.echo(f"policy rejected: {e}", err=True)
            raise typer.Exit(2) from None
        if as_json:
            typer.echo(json.dumps(sim.to_dict()))
        else:
            typer.echo(render(sim, details))
