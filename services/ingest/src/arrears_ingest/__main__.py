"""`python -m arrears_ingest`: the ingest service (PME master sheet -> account-changed / ingest-rejected)."""

from __future__ import annotations

from arrears_shared.service import Context, ServiceDefinition
from arrears_shared.service import main as run

from .runs import scheduled, views
from .runs.service import SheetIngestor
from .settings import IngestSettings
from .sources.sheet import SheetReader
from .validation import ValidationConfig


def validation_config(settings: IngestSettings) -> ValidationConfig:
    return ValidationConfig(
        default_region=settings.ingest_default_region.upper(),
        date_order=settings.ingest_date_order,
        default_currency=settings.ingest_default_currency,
    )


def definition(settings: IngestSettings | None = None) -> ServiceDefinition:
    settings = settings or IngestSettings(service_name="ingest")

    async def on_start(ctx: Context) -> None:
        reader = SheetReader(settings)
        ctx.extra["sheet_reader"] = reader
        ctx.extra["sheet_ingestor"] = SheetIngestor(
            engine=ctx.engine,
            schema=ctx.schema,
            cfg=validation_config(settings),
            read=reader.read,
            transaction=ctx.transaction,
        )

    return ServiceDefinition(
        name="ingest",
        settings=settings,
        consumers=[],
        routers=[views.router],
        loops=[scheduled.poll_sheet],
        on_start=on_start,
        readiness={"sheet_source": scheduled.sheet_source_ready},
    )


def main() -> None:
    run(definition)


if __name__ == "__main__":
    main()
