"""Replays queued sheet write-backs until the sheet takes them (seed 002: queue, then replay)."""

from __future__ import annotations

import logging

from arrears_shared.service import Context

from ..settings import IngestSettings
from .service import SheetWriteBack

log = logging.getLogger(__name__)


async def replay_writebacks(ctx: Context) -> None:
    settings: IngestSettings = ctx.settings  # type: ignore[assignment]
    if not (settings.sheets_spreadsheet_id and settings.ingest_writeback):
        await ctx.stopping.wait()
        return
    while await ctx.sleep(settings.ingest_writeback_retry_s):
        wb: SheetWriteBack = ctx.extra["sheet_writeback"]
        if ctx.extra["sheet_ingestor"].running:
            continue  # the run queues its outcomes chunk by chunk and flushes them all when it ends
        try:
            if await wb.pending():
                await wb.flush_quietly()
        except Exception as e:  # database trouble: try again next time
            log.error("write-back replay failed", extra={"error": f"{type(e).__name__}: {str(e)[:300]}"})
