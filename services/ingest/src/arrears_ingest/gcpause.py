"""Pausing Python's cyclic garbage collector while a run allocates hundreds of thousands of objects.

A run creates rows, events and records by the hundred thousand and keeps a chunk's worth alive at a time;
every few hundred allocations the collector walks the young objects, and ever more often the old ones too,
which doubles the cost of encoding an event. None of these objects form reference cycles (reference
counting frees them), so the collector is paused for the duration of a run and resumes afterwards
(re-entrant: concurrent runs resume it when the last one ends; a collector that was off stays off).
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0
_resume = False


@contextlib.contextmanager
def paused() -> Iterator[None]:
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()
