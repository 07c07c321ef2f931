"""Row validation off the event loop: in worker processes (default), or in a worker thread.

Validation is pure CPU (phone numbers, amounts, dates, hashes: ~70 µs a row) and holds the GIL, so in the
service process it competes with the database writes, the outbox relay and the HTTP server. Worker
processes (spawned, so they import only the validation modules) let it use another core while the service
process writes the previous chunk. `workers = 0` validates in a thread of the service process instead.

A worker that dies breaks the pool: the run fails (nothing of the chunk was written) and the next run
starts a new pool.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from .. import gcpause
from .columns import ChannelColumns
from .rows import AccountRow, Rejection, ValidationConfig, validate_row

log = logging.getLogger(__name__)

Item = tuple[list[str], int, str]  # cells (ALL_COLUMNS order, then channel cells), row number, raw hash
Validated = AccountRow | list[Rejection]
Channels = Sequence[ChannelColumns]  # the sheet's extra channel columns (`HeaderMap.channels`)


def validate_rows(cfg: ValidationConfig, items: Sequence[Item], channels: Channels = ()) -> list[Validated]:
    """`validate_row` over a batch (the unit of work sent to a worker process)."""
    with gcpause.paused():
        return [validate_row(cells, n, cfg, rhash, channels) for cells, n, rhash in items]


def _ready() -> bool:
    return True


class ValidationPool:
    def __init__(self, cfg: ValidationConfig, workers: int) -> None:
        self.cfg = cfg
        self.workers = workers
        self._executor: Executor | None = None
        self._lock = threading.Lock()

    def _pool(self) -> Executor | None:
        if self.workers <= 0:
            return None
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=multiprocessing.get_context("spawn")
                )
            return self._executor

    async def start(self) -> None:
        """Start the worker processes now (their start-up costs a second or two), not on the first run."""
        pool = self._pool()
        if pool is not None:
            loop = asyncio.get_running_loop()
            await asyncio.gather(*(loop.run_in_executor(pool, _ready) for _ in range(self.workers)))

    async def validate(self, items: Sequence[Item], channels: Channels = ()) -> list[Validated]:
        if not items:
            return []
        channels = tuple(channels)
        pool = self._pool()
        if pool is None:
            return await asyncio.to_thread(validate_rows, self.cfg, items, channels)
        loop = asyncio.get_running_loop()
        size = -(-len(items) // self.workers)  # one batch per worker
        batches = [items[i : i + size] for i in range(0, len(items), size)]
        try:
            parts = await asyncio.gather(
                *(loop.run_in_executor(pool, validate_rows, self.cfg, b, channels) for b in batches)
            )
        except BrokenProcessPool:
            log.error("a validation worker process died; the pool is restarted for the next run")
            self.shutdown()
            raise
        return [v for part in parts for v in part]

    def shutdown(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
