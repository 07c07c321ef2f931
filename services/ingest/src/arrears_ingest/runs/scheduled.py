"""The sheet poll loop (first run at start-up) and the `sheet_source` readiness check."""

from __future__ import annotations

import logging
from typing import Any

from arrears_shared.service import Context

from .. import metrics
from ..settings import IngestSettings
from . import service

log = logging.getLogger(__name__)


async def poll_sheet(ctx: Context) -> None:
    settings: IngestSettings = ctx.settings  # type: ignore[assignment]
    ingestor: service.SheetIngestor = ctx.extra["sheet_ingestor"]
    if not settings.sheets_spreadsheet_id:
        log.info("sheet polling disabled: ARREARS_SHEETS_SPREADSHEET_ID is not set")
        await ctx.stopping.wait()
        return
    while not ctx.stopping.is_set():
        try:
            await ingestor.run("poll")
        except service.RunInProgress:
            log.info("sheet poll skipped: another replica is running it")
        except Exception as e:
            # database trouble etc.; the host's supervisor would restart us, but a poll loop just tries again
            log.error("sheet poll failed", extra={"error": f"{type(e).__name__}: {str(e)[:300]}"})
        if not await ctx.sleep(settings.ingest_poll_interval_s):
            return


async def sheet_source_ready(ctx: Context) -> tuple[bool, Any]:
    """Always ok=True: a degraded sheet keeps the last good snapshot and the service keeps serving
    (uploads, API); the detail says "degraded since ..." and the metrics carry it for alerting."""
    settings: IngestSettings = ctx.settings  # type: ignore[assignment]
    if not settings.sheets_spreadsheet_id:
        return True, "disabled (ARREARS_SHEETS_SPREADSHEET_ID not set)"
    health = await service.source_health(ctx.engine, ctx.schema)
    metrics.DEGRADED.labels(service.SOURCE).set(1 if health.state == "degraded" else 0)
    if health.last_success is not None:
        metrics.LAST_SUCCESS.labels(service.SOURCE).set(health.last_success.timestamp())
    return True, health.detail()
