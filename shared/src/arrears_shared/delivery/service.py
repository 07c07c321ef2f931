"""A dispatcher as a service: its consumers (see `BULK_LANE` and `STOP_LANE`) and the send loop.

Each dispatcher builds its `DeliveryEngine` (its channel, templates, required settings) and hands it here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .. import topics
from ..service import Consumer, ServiceDefinition
from .engine import DeliveryEngine
from .gate import Gate
from .settings import DispatchSettings
from .views import status_router

S = TypeVar("S", bound=DispatchSettings)

# What a dispatcher reads, in two lanes of its one consumer group (two members, each its own fetch loop and
# transactions): the bulk of the traffic (every notice, every outcome), and what stops sending (an account
# paid or closed at its source, a STOP or a person's decision about a reply). A stop is read within one hop,
# whatever the backlog of notices and outcomes in the other lane; the order between the lanes does not matter
# (a stop is judged against the state each notice was planned from: `checks.stopped`, `checks.opted_out`).
BULK_LANE = (topics.NOTICE_DUE, topics.MESSAGE_SENT)
STOP_LANE = (topics.ACCOUNT_CHANGED, topics.REPLY_RECEIVED)


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
        # Two members of the one consumer group: the bulk lane (notices, outcomes) and the stop lane (account
        # changes, replies). A payment or a STOP is read at once, never behind a batch of queued notices.
        consumers=[
            Consumer(handler=engine.handle_batch, topics=BULK_LANE, group=group),
            Consumer(handler=engine.handle_batch, topics=STOP_LANE, group=group),
        ],
        loops=[engine.loop],
        routers=[status_router(engine)],
    )
