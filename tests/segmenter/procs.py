"""Child process for the crash test: run the segmenter's timer tick and SIGKILL itself in the middle of a
tick, after the notices of the batch were written to the ledger but before the transaction commits.

Usage: python procs.py crash-mid-tick URL BATCH CRASH_AT_TICK
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from arrears_segmenter import bulk
from arrears_segmenter.deps import Deps
from arrears_segmenter.schedule.models import load_policy
from arrears_segmenter.timers.scheduled import tick
from arrears_shared.db.engine import make_engine


async def crash_mid_tick(url: str, batch: int, crash_at: int) -> None:
    ticks = 0
    real_insert = bulk.insert

    async def insert(conn, table, rows, **kw):  # type: ignore[no-untyped-def]
        out = await real_insert(conn, table, rows, **kw)
        if table.name == "notices" and rows:
            nonlocal ticks
            ticks += 1
            if ticks == crash_at:
                print(f"CRASHING mid-tick with {len(rows)} notices written, uncommitted", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
        return out

    bulk.insert = insert  # type: ignore[assignment]
    engine = make_engine(url)
    d = Deps(policy=load_policy(), timer_batch=batch)
    while await tick(engine, "segmenter", "segmenter", d):
        pass
    print("FINISHED without crashing", flush=True)


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "crash-mid-tick":
        asyncio.run(crash_mid_tick(args[0], int(args[1]), int(args[2])))
    else:
        raise SystemExit(f"unknown mode {mode}")
