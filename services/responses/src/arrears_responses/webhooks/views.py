"""`POST /webhooks/quo`: signed QUO (OpenPhone) webhooks, of either system (see `.signatures`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import cast

from arrears_shared.auth import public
from arrears_shared.service import Context
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import ValidationError

from .. import metrics
from ..settings import ResponsesSettings
from .models import QuoWebhookEvent, WebhookAck
from .service import handle_quo_event
from .signatures import WebhookRejected, verify_quo_webhook

log = logging.getLogger(__name__)


def webhooks_router(get_context: Callable[[], Context]) -> APIRouter:
    router = APIRouter(tags=["webhooks"])

    @router.post(
        "/webhooks/quo",
        response_model=WebhookAck,
        dependencies=[
            Depends(public("QUO webhooks: HMAC signature and timestamp verified, replays refused"))
        ],
    )
    async def quo_webhook(request: Request) -> WebhookAck:
        ctx = get_context()
        settings = cast(ResponsesSettings, ctx.settings)
        raw = await request.body()
        try:
            verified = verify_quo_webhook(request.headers, raw, settings)
        except WebhookRejected as e:
            log.warning("QUO webhook rejected", extra={"reason": str(e)[:200]})
            metrics.WEBHOOKS.labels("quo", "rejected").inc()
            raise HTTPException(401, str(e)[:200]) from e
        try:
            event = QuoWebhookEvent.model_validate_json(raw)
            async with ctx.transaction() as tx:
                ack = await handle_quo_event(tx, event, settings=settings, delivery_id=verified.delivery_id)
        except (ValidationError, KeyError, TypeError) as e:
            metrics.WEBHOOKS.labels("quo", "malformed").inc()
            raise HTTPException(400, f"malformed webhook body: {type(e).__name__}") from e
        metrics.WEBHOOKS.labels("quo", ack.status).inc()
        if ack.intent:
            metrics.REPLIES.labels(
                "sms", ack.intent, "matched" if ack.status == "processed" else "unmatched"
            ).inc()
        return ack

    return router
