"""The inbound adapters of installed channel packages (entry points `arrears.inbound`, see
arrears_shared.inbound), mounted on the responses app when it is built. Each adapter serves its provider's
webhooks and hands over replies and delivery failures; here each one is applied in its own transaction
(`ctx.transaction()`) by the channel-generic functions, idempotent on the provider message id. An exception
reaches the provider as a 5xx, so it delivers again. An adapter that is not configured in this process (a
missing secret) is skipped with a warning; responses starts without it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

from arrears_shared import inbound
from arrears_shared.inbound import DeliveryFailure, InboundReply
from arrears_shared.service import Context
from fastapi import APIRouter

from .. import metrics
from ..settings import ResponsesSettings
from .failures import record_failure
from .replies import record_inbound

log = logging.getLogger(__name__)


def reply_handler(get_context: Callable[[], Context]) -> inbound.OnReply:
    async def on_reply(reply: InboundReply) -> None:
        ctx = get_context()
        async with ctx.transaction() as tx:
            ack = await record_inbound(
                tx,
                channel=reply.channel,
                provider=reply.provider,
                provider_message_id=reply.provider_message_id,
                from_address=reply.from_address,
                to_address=reply.to_address,
                body=reply.body,
                received_at=reply.received_at,
                settings=cast(ResponsesSettings, ctx.settings),
            )
        metrics.WEBHOOKS.labels(reply.provider, ack.status).inc()
        if ack.intent:
            match = "matched" if ack.status == "processed" else "unmatched"
            metrics.REPLIES.labels(reply.channel, ack.intent, match).inc()

    return on_reply


def failure_handler(get_context: Callable[[], Context]) -> inbound.OnFailure:
    async def on_failure(failure: DeliveryFailure) -> None:
        async with get_context().transaction() as tx:
            published = await record_failure(tx, failure)
        # not published: already published, or its message-sent not consumed yet (published when it is)
        metrics.WEBHOOKS.labels(failure.provider, "failure_published" if published else "failure_kept").inc()

    return on_failure


def inbound_router(get_context: Callable[[], Context]) -> APIRouter:
    """Every configured adapter's routes (their access declared by the adapter: `public(...)` after its
    signature check)."""
    router = APIRouter()
    mounted = inbound.mount(reply_handler(get_context), failure_handler(get_context))
    for name, adapter_router in mounted.items():
        router.include_router(adapter_router)
        log.info("inbound adapter mounted", extra={"adapter": name})
    return router
