"""Progress for long CLI commands, on stderr so stdout stays machine-readable.

`rich.progress` draws a live bar on a terminal; on a pipe or in CI it prints nothing until the task ends and
then one final line, so logs keep a record without carriage-return noise. `--progress/--no-progress`
(default: on when stderr is a terminal) lets a script force either.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

ProgressOpt = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress",
        help="Show progress on stderr (default: when stderr is a terminal)",
        show_default=False,
    ),
]

Advance = Callable[[float], None]


def wanted(flag: bool | None) -> bool:
    return sys.stderr.isatty() if flag is None else flag


@contextmanager
def progress(
    label: str, total: float | None, *, enabled: bool, unit: str = ""
) -> Iterator[tuple[Advance, Callable[[str], None]]]:
    """Yield `(advance, describe)`: `advance(n)` moves the bar by n, `describe(text)` replaces the label.
    With `total=None` the bar is a spinner with a counter. Disabled: both are no-ops."""
    if not enabled:
        yield (lambda _n: None), (lambda _t: None)
        return
    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is None:
        columns += [TextColumn("{task.completed:.0f}" + (f" {unit}" if unit else "")), TimeElapsedColumn()]
    else:
        columns += [BarColumn(), MofNCompleteColumn() if not unit else TaskProgressColumn()]
        columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    # a file-less stderr console resolves sys.stderr when writing, so test runners that swap it see the output
    bar = Progress(*columns, console=Console(stderr=True), transient=False)
    task = bar.add_task(label, total=total)
    with bar:
        yield (lambda n: bar.advance(task, n)), (lambda t: bar.update(task, description=t))
