"""`POST /webhooks/gmail/push`: Gmail `users.watch` notifications through a Pub/Sub push subscription.

Authenticated by the OIDC ID token Pub/Sub signs for an authenticated push subscription
(`Authorization: Bearer`, checked by `.push_auth`: Google's signature, issuer, audience, service account),
before the body is parsed. The body only wakes the poller: the mailbox is always read from the stored history
id, so even an authenticated but replayed push can change nothing but the timing of a poll."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable
from typing import Any, cast

from arrears_shared.auth import public
from arrears_shared.service import Context
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ValidationError

from .. import metrics
from ..settings import ResponsesSettings
from .push_auth import PushRejected, PushVerifier

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
        verifiers: dict[tuple[str, str, str], PushVerifier] = {}

        def verifier(s: ResponsesSettings) -> PushVerifier:
            audience, account = s.responses_gmail_push_audience, s.responses_gmail_push_service_account
            if not audience or not account:
                raise PushRejected(401, "push not configured")
            key = (audience, account, s.responses_gmail_push_certs_url)
            if key not in verifiers:
                verifiers[key] = PushVerifier(*key, certs_cache_s=s.responses_gmail_push_certs_cache_s)
            return verifiers[key]

        @router.post(
            "/webhooks/gmail/push",
            status_code=204,
            dependencies=[
                Depends(
                    public("Gmail push: Pub/Sub's OIDC token (Google-signed, audience and account checked)")
                )
            ],
        )
        async def gmail_push(request: Request) -> Response:
            s = cast(ResponsesSettings, get_context().settings)
            try:
                await asyncio.to_thread(verifier(s).verify, request.headers.get("authorization"))
            except PushRejected as e:
                metrics.WEBHOOKS.labels("gmail", "rejected").inc()
                log.warning("gmail push rejected", extra={"reason": str(e)[:200]})
                detail = "push verification unavailable" if e.status == 503 else "invalid push token"
                raise HTTPException(e.status, detail) from None
            try:
                body = PushBody.model_validate_json(await request.body())
                notice: dict[str, Any] = json.loads(
                    base64.urlsafe_b64decode(body.message.data + "=" * (-len(body.message.data) % 4))
                )
            except (ValidationError, ValueError, TypeError):
                metrics.WEBHOOKS.labels("gmail", "malformed").inc()
                raise HTTPException(400, "not a Pub/Sub push with base64 JSON message.data") from None
            log.info(
                "gmail push",
                extra={"history_id": notice.get("historyId") if isinstance(notice, dict) else None},
            )
            metrics.WEBHOOKS.labels("gmail", "push").inc()
            wake.set()
            return Response(status_code=204)

        return router

    return factory
