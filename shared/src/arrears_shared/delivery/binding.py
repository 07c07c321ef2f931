"""What a delivery engine is bound to once its service starts: the database, the schema, the service name
(the source of its events) and the relay's wake-up. Every stage holds the one `Binding` of its engine."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from sqlalchemy.ext.asyncio import AsyncEngine

from ..stream.transaction import Transaction
from ..stream.waking import waking_transaction


def _nothing() -> None:
    return None


class Binding:
    def __init__(self) -> None:
        self._engine: AsyncEngine | None = None
        self.schema = ""
        self.service = ""
        self.wake: Callable[[], None] = _nothing

    def bind(
        self, engine: AsyncEngine, schema: str, service: str, wake: Callable[[], None] | None = None
    ) -> None:
        self._engine, self.schema, self.service = engine, schema, service
        self.wake = wake or _nothing

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("DeliveryEngine is not bound to a database (call bind() or loop())")
        return self._engine

    def tx(self) -> AbstractAsyncContextManager[Transaction]:
        """State change + events in one transaction; the relay is woken when it committed events."""
        return waking_transaction(self.engine, self.schema, self.service, self.wake)
