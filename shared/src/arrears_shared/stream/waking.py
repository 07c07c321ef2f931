"""Commit, then wake the relay: a transaction whose events go out at once instead of at the relay's next
poll. For code outside a consumer (timers, pollers, send workers, API handlers); the `StreamRunner` wakes the
relay itself after each batch that wrote outbox rows (its `on_commit`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from .transaction import Transaction, transaction


@asynccontextmanager
async def waking_transaction(
    engine: AsyncEngine,
    schema: str,
    service: str,
    wake: Callable[[], None] | None,
    *,
    always: bool = False,
) -> AsyncIterator[Transaction]:
    """`transaction(engine, schema, service)`, then `wake()` once it committed: only when the transaction
    emitted events, or after every commit with `always=True`. Nothing is woken when it raised (it rolled
    back). Pass `relay.wake` (or a lambda reading the relay late, if it may change) as `wake`."""
    async with transaction(engine, schema, service) as tx:
        yield tx
        emitted = bool(tx.records)  # read before the exit flushes them to the outbox
    if wake is not None and (emitted or always):
        wake()
