"""`python -m arrears_ingest`: the ingest service (PME master sheet, CSV/XLSX uploads, payment webhooks
-> account-changed / ingest-rejected; sheet write-back of each row's outcome and, from message-sent /
reply-received, each account's last contact, last reply, intent and promise)."""

from __future__ import annotations

import asyncio

from arrears_shared.audit.views import audit_router
from arrears_shared.service import Consumer, Context, ServiceDefinition
from arrears_shared.service import main as run
from arrears_shared.webhook_dedupe import DedupeTable, pruning_loop

from .contacts.handlers import make_handler as contacts_handler
from .payments import views as payment_views
from .runs import scheduled, views
from .runs.service import SheetIngestor, UploadIngestor
from .settings import IngestSettings
from .sources.sheet import SheetReader
from .uploads import views as upload_views
from .validation import ValidationConfig, column_aliases
from .validation.columns import check_writeback_headers
from .validation.pool import ValidationPool
from .writeback import scheduled as writeback_scheduled
from .writeback.service import SheetWriteBack


def validation_config(settings: IngestSettings) -> ValidationConfig:
    return ValidationConfig(
        default_region=settings.ingest_default_region.upper(),
        date_order=settings.ingest_date_order,
        default_currency=settings.ingest_default_currency,
        aliases=column_aliases(settings.ingest_column_map),
    )


def definition(settings: IngestSettings | None = None) -> ServiceDefinition:
    settings = settings or IngestSettings(service_name="ingest")
    cfg = validation_config(settings)  # fails fast on a bad ARREARS_INGEST_COLUMN_MAP
    # ... and on contact columns that would collide with the sheet's data columns
    check_writeback_headers(settings.ingest_writeback_contact_columns.values(), cfg.aliases)
    contacts_changed = asyncio.Event()  # set by the consumer, awaited by the write-back loop

    pool = ValidationPool(cfg, settings.ingest_validation_workers)

    async def validation_workers(ctx: Context) -> None:
        """Starts the validation worker processes with the service, stops them with it."""
        try:
            await pool.start()
            await ctx.stopping.wait()
        finally:
            pool.shutdown()

    async def on_start(ctx: Context) -> None:
        reader = SheetReader(settings)
        ctx.extra["sheet_reader"] = reader
        writeback = SheetWriteBack(
            engine=ctx.engine,
            schema=ctx.schema,
            settings=settings,
            client=reader.worksheet,
            cfg=cfg,
            wake_event=contacts_changed,
        )
        ctx.extra["sheet_writeback"] = writeback
        enabled = settings.ingest_writeback
        ctx.extra["sheet_ingestor"] = SheetIngestor(
            engine=ctx.engine,
            schema=ctx.schema,
            cfg=cfg,
            read=reader.read,
            transaction=ctx.transaction,
            on_chunk=writeback.queue if enabled else None,
            after_commit=writeback.flush_quietly if enabled else None,
            chunk_rows=settings.ingest_chunk_rows,
            pool=pool,
        )
        ctx.extra["upload_ingestor"] = UploadIngestor(
            engine=ctx.engine,
            schema=ctx.schema,
            cfg=cfg,
            transaction=ctx.transaction,
            chunk_rows=settings.ingest_chunk_rows,
            pool=pool,
        )

    return ServiceDefinition(
        name="ingest",
        settings=settings,
        consumers=[
            Consumer(
                handler=contacts_handler(settings, contacts_changed.set),
            )
        ],
        routers=[views.router, upload_views.router, payment_views.router, audit_router],
        body_limits={"/ingest/upload": settings.ingest_upload_max_bytes},
        loops=[
            scheduled.poll_sheet,
            writeback_scheduled.replay_writebacks,
            validation_workers,
            pruning_loop(DedupeTable("webhook_deliveries")),
        ],
        on_start=on_start,
        readiness={"sheet_source": scheduled.sheet_source_ready},
    )


def main() -> None:
    run(definition)


if __name__ == "__main__":
    main()
