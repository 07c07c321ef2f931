"""Consumer handler: `message-sent` and `reply-received` -> the account's contact facts (one upsert per batch)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from arrears_shared.cloudevents import Envelope
from arrears_shared.stream.runner import BatchHandler
from arrears_shared.stream.transaction import Transaction

from ..settings import IngestSettings
from . import service


def make_handler(settings: IngestSettings, wake: Callable[[], None]) -> BatchHandler:
    """`wake` tells the write-back that facts changed (it flushes after a short delay, so the batch has
    committed by then and a burst of batches shares one sheet write)."""
    enabled = bool(settings.contact_columns())

    async def handle_batch(events: Sequence[Envelope], tx: Transaction) -> None:
        if not enabled:  # no sheet or no contact column: nothing to keep
            return
        folds = service.fold(env.data for env in events)
        if folds:
            await service.record(tx.conn, tx.schema, folds, tx.now, settings.ingest_default_currency)
            wake()

    return handle_batch
