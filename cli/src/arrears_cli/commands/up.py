"""`arrears up`: run the whole platform on the embedded stack in the foreground."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from types import FrameType

import typer

from arrears_cli.stack.platform import DEMO_MAILBOXES, Platform, PlatformStartError
from arrears_cli.stack.processes import ProcessExitedError


def up(
    data_dir: Path = typer.Option(
        Path(".arrears"), "--data-dir", help="Where PostgreSQL keeps its data (reused)"
    ),
    partitions: int = typer.Option(6, "--partitions", min=1, help="Partitions per topic"),
    accounts: int = typer.Option(10_000, "--accounts", min=0, help="Accounts in the generated demo sheet"),
    no_demo: bool = typer.Option(False, "--no-demo", help="Don't generate and load the demo sheet"),
    start_timeout: float = typer.Option(
        120.0,
        "--start-timeout",
        min=1.0,
        help="Seconds to wait for every service's /healthz before showing the summary; a service still "
        "starting then is marked 'not healthy yet' and keeps starting",
    ),
) -> None:
    """Start broker, PostgreSQL, provider emulators and every service; Ctrl-C stops everything."""
    data_dir.mkdir(parents=True, exist_ok=True)
    platform = Platform(data_dir, partitions=partitions, gmail_pool=DEMO_MAILBOXES)
    try:
        platform.start(
            demo_accounts=None if no_demo or accounts == 0 else accounts,
            timeout=start_timeout,
            strict=False,
        )
    except (PlatformStartError, ProcessExitedError, TimeoutError) as exc:
        typer.echo(f"arrears up failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        raise typer.Exit(130) from None

    typer.echo(platform.summary())
    stop = threading.Event()
    received: list[int] = []

    first_at: list[float] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        first_at.append(time.monotonic())
        # a second Ctrl-C (not the same one forwarded twice by a wrapper): don't wait for graceful stops
        if len(received) > 1 and first_at[-1] - first_at[0] > 1.0:
            platform.supervisor.stop_all(timeout=1.0)
            raise SystemExit(130)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        while not stop.wait(0.5):
            pass
        t = time.monotonic()
        platform.log(f"received {signal.Signals(received[0]).name}: stopping")
        platform.stop()
        platform.log(f"stopped in {time.monotonic() - t:.1f}s")
    finally:
        platform.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def register(app: typer.Typer) -> None:
    app.command("up")(up)
