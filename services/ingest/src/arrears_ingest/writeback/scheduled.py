"""Flushes the write-back: queued outcomes until the sheet takes them (queued while the sheet is unavailable,
then replayed), and contact facts shortly after they change."""

from __future__ import annotations

import asyncio
import logging
import math
import time

from arrears_shared.service import Context

from ..settings import IngestSettings
from .service import SheetWriteBack

log = logging.getLogger(__name__)


async def replay_writebacks(ctx: Context) -> None:
    """Every `ARREARS_INGEST_WRITEBACK_RETRY_S`, or soon after new contact facts woke it, flush what is
    pending. After a wake it waits `ARREARS_INGEST_WRITEBACK_CONTACT_DELAY_S` (a burst of events becomes
    one flush), and at least `ARREARS_INGEST_WRITEBACK_CONTACT_INTERVAL_S` after the previous woken flush
    (a steady trickle of events costs a bounded number of Sheets requests a minute)."""
    settings: IngestSettings = ctx.settings  # type: ignore[assignment]
    if not (settings.sheets_spreadsheet_id and settings.ingest_writeback):
        await ctx.stopping.wait()
        return
    wb: SheetWriteBack = ctx.extra["sheet_writeback"]
    last_woken_flush = -math.inf
    while not ctx.stopping.is_set():
        await _woken_or_stopping(wb.woken, ctx.stopping, settings.ingest_writeback_retry_s)
        if wb.woken.is_set():
            earliest = last_woken_flush + settings.ingest_writeback_contact_interval_s
            wait = max(settings.ingest_writeback_contact_delay_s, earliest - time.monotonic())
            if not await ctx.sleep(wait):
                return
            wb.woken.clear()  # what arrives from now on wakes the next round
            last_woken_flush = time.monotonic()
        if ctx.stopping.is_set():
            return
        if ctx.extra["sheet_ingestor"].running:
            continue  # the run queues its outcomes chunk by chunk and flushes them all when it ends
        try:
            if await wb.pending():
                await wb.flush_quietly()
        except Exception as e:  # database trouble: try again next time
            log.error("write-back replay failed", extra={"error": f"{type(e).__name__}: {str(e)[:300]}"})


async def _woken_or_stopping(woken: asyncio.Event, stopping: asyncio.Event, within_s: float) -> None:
    """Return when `woken` or `stopping` is set, or after `within_s` seconds."""
    waits = [asyncio.ensure_future(woken.wait()), asyncio.ensure_future(stopping.wait())]
    try:
        await asyncio.wait(waits, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)
