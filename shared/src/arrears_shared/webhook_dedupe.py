"""Bounded webhook de-duplication tables: the ids of webhook deliveries a service has already applied are
kept for a retention window longer than any provider's retry window, then pruned on a schedule.

Providers redeliver a webhook they could not hand over, with the same delivery / event id, for a while:
Stripe for up to 3 days, QUO (OpenPhone) and Standard Webhooks senders for about as long, Meta (WhatsApp
Cloud API) for up to 7 days. An id must be remembered at least that long or a late retry is applied twice;
after that no provider sends it again, so remembering it longer only grows the table. The default
(`ARREARS_WEBHOOK_DEDUPE_RETENTION_S`, 10 days; at least 8) covers the longest of those windows with a
margin. Each owning service runs `pruning_loop` as one of its loops (every
`ARREARS_WEBHOOK_DEDUPE_PRUNE_EVERY_S`), deleting in batches so no prune holds a long lock.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from prometheus_client import Counter
from pydantic import Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .settings import ArrearsSettings

if TYPE_CHECKING:
    from .service import Context

log = logging.getLogger(__name__)

LONGEST_PROVIDER_RETRY = timedelta(days=7)  # Meta; Stripe and QUO retry for about 3 days
PRUNED = Counter(
    "arrears_webhook_dedupe_pruned_total",
    "Webhook de-duplication ids forgotten after the retention window",
    ["table"],
)


class WebhookDedupeSettings(ArrearsSettings):
    """Mixed into the settings of the services that receive webhooks."""

    webhook_dedupe_retention_s: float = Field(
        10 * 86400.0,
        ge=LONGEST_PROVIDER_RETRY.total_seconds() + 86400,
        description="Remember applied webhook delivery ids this long (must exceed the longest provider retry "
        "window: Stripe and QUO about 3 days, Meta 7 days), then forget them",
    )
    webhook_dedupe_prune_every_s: float = Field(
        3600.0, gt=0, description="How often the remembered webhook delivery ids are pruned"
    )


@dataclass(frozen=True)
class DedupeTable:
    """A table of remembered delivery ids: `name` (unqualified) and the column holding when each arrived."""

    name: str
    received_column: str = "received_at"


async def prune(
    engine: AsyncEngine, schema: str, table: DedupeTable, *, older_than: timedelta, batch: int = 5000
) -> int:
    """Delete the ids that arrived more than `older_than` ago, `batch` rows per transaction; returns the
    number deleted."""
    total = 0
    while True:
        async with engine.begin() as conn:
            res = await conn.execute(
                text(
                    f"""DELETE FROM {schema}.{table.name} WHERE ctid IN (
                        SELECT ctid FROM {schema}.{table.name}
                        WHERE {table.received_column} < now() - make_interval(secs => :s) LIMIT :n)"""
                ),
                {"s": older_than.total_seconds(), "n": batch},
            )
        done = res.rowcount or 0
        total += done
        if done < batch:
            break
    if total:
        PRUNED.labels(table.name).inc(total)
        log.info("pruned webhook de-duplication ids", extra={"table": table.name, "deleted": total})
    return total


def pruning_loop(*tables: DedupeTable) -> Callable[[Context], Awaitable[None]]:
    """A service loop that prunes `tables` (in the service's schema) at start and then on a schedule."""

    async def prune_webhook_dedupe(ctx: Context) -> None:
        s = ctx.settings
        retention = timedelta(seconds=s.webhook_dedupe_retention_s)  # type: ignore[attr-defined]
        every = s.webhook_dedupe_prune_every_s  # type: ignore[attr-defined]
        while True:
            for t in tables:
                await prune(ctx.engine, ctx.schema, t, older_than=retention)
            if not await ctx.sleep(every):
                return

    return prune_webhook_dedupe
