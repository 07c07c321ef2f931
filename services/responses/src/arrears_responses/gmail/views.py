"""`POST /webhooks/gmail/push`: Gmail `users.watch` notifications through a Pub/Sub push subscription.

Authenticated by a shared token in the push URL (`?token=`, compared in constant time). The body only wakes
the poller: the mailbox is always read from the stored history id, so a forged or replayed push can change
nothing but the timing of a poll."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any, cast

from arrears_shared.auth import public
from arrears_shared.service import Context
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel

from .. import metrics
from ..settings import ResponsesSettings

log = logging.getLogger(__name__)


class PushMessage(BaseModel):
    data: str = ""
    messageId: str | None = None
    publishTime: str | None = None


class PushBody(BaseModel):
    message: PushMessage
    subscription: str | None = None


def make_push_router(wake: asyncio.Event) -> Callable[[Callable[[], Context]], APIRouter]:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(tags=["webhooks"])

        @router.post(
            "/webhooks/gmail/push",
            status_code=204,
            dependencies=[
                Depends(public("Gmail push: a shared token compared in constant time; only wakes the poller"))
            ],
        )
        async def gmail_push(body: PushBody, token: str = Query("", max_length=500)) -> Response:
            s = cast(ResponsesSettings, get_context().settings)
            expected = s.responses_gmail_push_token
            if expected is None or not hmac.compare_digest(
                token.encode(), expected.get_secret_value().encode()
            ):
                metrics.WEBHOOKS.labels("gmail", "rejected").inc()
                raise HTTPException(401, "invalid push token")
            notice: dict[str, Any] = {}
            try:
                notice = json.loads(
                    base64.urlsafe_b64decode(body.message.data + "=" * (-len(body.message.data) % 4))
                )
            except (ValueError, TypeError):
                metrics.WEBHOOKS.labels("gmail", "malformed").inc()
                raise HTTPException(400, "message.data is not base64 JSON") from None
            log.info("gmail push", extra={"history_id": notice.get("historyId")})
            metrics.WEBHOOKS.labels("gmail", "push").inc()
            wake.set()
            return Response(status_code=204)

        return router

    return factory
