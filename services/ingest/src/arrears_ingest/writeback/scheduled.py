"""Flushes the write-back: queued outcomes until the sheet takes them (seed 002: queue, then replay), and
contact facts shortly after they change."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from arrears_shared.service import Context

from ..settings import IngestSettings
from .service import SheetWriteBack

log = logging.getLogger(__name__)


async def replay_writebacks(ctx: Context) -> None:
    """Every `ARREARS_INGEST_WRITEBACK_RETRY_S`, or `ARREARS_INGEST_WRITEBACK_CONTACT_DELAY_S` after new
    contact facts woke it (the delay gathers a burst of events into one flush), flush what is pending."""
    settings: IngestSettings = ctx.settings  # type: ignore[assignment]
    if not (settings.sheets_spreadsheet_id and settings.ingest_writeback):
        await ctx.stopping.wait()
        return
    wb: SheetWriteBack = ctx.extra["sheet_writeback"]
    while not ctx.stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wb.woken.wait(), timeout=settings.ingest_writeback_retry_s)
        if wb.woken.is_set():
            if not await ctx.sleep(settings.ingest_writeback_contact_delay_s):
                return
            wb.woken.clear()  # what arrives from now on wakes the next round
        if ctx.stopping.is_set():
            return
        if ctx.extra["sheet_ingestor"].running:
            continue  # the run queues its outcomes chunk by chunk and flushes them all when it ends
        try:
            if await wb.pending():
                await wb.flush_quietly()
        except Exception as e:  # database trouble: try again next time
            log.error("write-back replay failed", extra={"error": f"{type(e).__name__}: {str(e)[:300]}"})
