"""A dispatcher as a service: one consumer (notices, opt-out replies, its own sends) and the send loop.

Each dispatcher builds its `DeliveryEngine` (its channel, templates, required settings) and hands it here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..service import Consumer, ServiceDefinition
from .engine import DeliveryEngine
from .gate import Gate
from .settings import DispatchSettings
from .views import status_router

S = TypeVar("S", bound=DispatchSettings)


def dispatcher_definition(
    name: str,
    settings: S,
    build_engine: Callable[..., DeliveryEngine],
    *,
    group: str | None = None,
    gate: Gate | None = None,
) -> ServiceDefinition:
    """`group` overrides the consumer group (tests run a second "replica" group); its DLQ follows it."""
    if group and not settings.dispatch_dlq_group:
        settings = settings.model_copy(update={"dispatch_dlq_group": group})
    engine = build_engine(settings, gate=gate)
    return ServiceDefinition(
        name=name,
        settings=settings,
        consumers=[
            Consumer(
                handler=engine.handle_batch,
                group=group,
            )
        ],
        loops=[engine.loop],
        routers=[status_router(engine)],
    )
