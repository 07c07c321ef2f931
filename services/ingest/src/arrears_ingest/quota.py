"""The time one ingest run spent waiting out the Sheets quota (429s), for its `ingest.runs` row.

The gspread client is shared by the run's read and the write-back (which has its own loop), so a process-wide
counter would charge a run with the write-back's waits. Instead the run opens `measure()`; the reading
thread calls `record()` from the client's ``on_quota_wait`` hook and finds the run's tally in a context
variable (``asyncio.to_thread`` copies the context into the thread). Waits outside a run are not counted.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from threading import Lock


@dataclass
class QuotaTally:
    waits: int = 0
    seconds: float = 0.0
    open: bool = True

    def __post_init__(self) -> None:
        self._lock = Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            if self.open:
                self.waits += 1
                self.seconds += seconds


_current: ContextVar[QuotaTally | None] = ContextVar("arrears_ingest_quota_tally", default=None)


@contextmanager
def measure() -> Iterator[QuotaTally]:
    """Tally the quota waits of the code run inside (and of the threads and tasks it starts meanwhile)."""
    tally = QuotaTally()
    token = _current.set(tally)
    try:
        yield tally
    finally:
        tally.open = False  # a task started inside that outlives the run no longer counts
        _current.reset(token)


def record(seconds: float) -> None:
    tally = _current.get()
    if tally is not None:
        tally.add(seconds)
