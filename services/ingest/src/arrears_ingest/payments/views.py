"""Payment webhooks. Signature first (400, nothing changes), then one transaction. No business logic here."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from arrears_shared.auth import public
from arrears_shared.service import Context
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import ValidationError

from . import service
from .models import GenericPaymentEvent, Payment, PaymentFailure, PaymentResult, StripeEvent
from .signatures import InvalidSignature, verify_standard, verify_stripe

log = logging.getLogger(__name__)


async def _apply(
    ctx: Context, provider: str, delivery_id: str, payment: Payment | PaymentFailure | None
) -> PaymentResult:
    async with ctx.transaction() as tx:
        if not await service.claim_delivery(tx.conn, tx.schema, provider, delivery_id):
            return PaymentResult(status="replayed")
        if payment is None:
            result = PaymentResult(status="ignored")
        elif isinstance(payment, PaymentFailure):
            result = await service.record_failure(tx, payment)
        else:
            result = await service.record_payment(tx, payment)
        await service.set_delivery_outcome(tx.conn, tx.schema, provider, delivery_id, result.status)
    log.info(
        "payment webhook",
        extra={"provider": provider, "outcome": result.status, "account_status": result.account_status},
    )
    return result


def router(get_context: Callable[[], Context]) -> APIRouter:
    r = APIRouter(
        prefix="/ingest/payments",
        tags=["payments"],
        dependencies=[
            Depends(public("payment webhooks: each verifies its provider's HMAC signature and timestamp"))
        ],
    )
    bad: dict[int | str, dict[str, Any]] = {
        400: {"description": "bad or missing signature, stale timestamp, unreadable payment data"},
        404: {"description": "not configured"},
    }

    @r.post("/stripe", response_model=PaymentResult, responses=bad)
    async def stripe_webhook(request: Request) -> PaymentResult:
        """Stripe-style webhook (`Stripe-Signature: t=...,v1=...`). Applies `payment_intent.succeeded`,
        `charge.succeeded` and paid `checkout.session.completed`; records and publishes failed payments
        (`payment_intent.payment_failed`, `charge.failed`). Account id in `metadata.account_id` or
        `client_reference_id`; other event types are acknowledged and ignored."""
        ctx = get_context()
        secret = ctx.settings.payments_stripe_webhook_secret  # type: ignore[attr-defined]
        if secret is None:
            raise HTTPException(404, "Stripe webhook not configured")
        body = await request.body()  # capped while read (ARREARS_HTTP_MAX_BODY_BYTES, 413)
        try:
            verify_stripe(
                body,
                request.headers.get("stripe-signature"),
                secret.get_secret_value(),
                ctx.settings.payments_stripe_tolerance_s,  # type: ignore[attr-defined]
            )
        except InvalidSignature as e:
            log.warning("payment webhook refused", extra={"provider": "stripe", "reason": str(e)})
            raise HTTPException(400, f"invalid signature: {e}") from None
        try:
            event = StripeEvent.model_validate_json(body)
            payment = service.parse_stripe(event) or service.parse_stripe_failure(event)
        except (ValidationError, service.PaymentDataError) as e:
            raise HTTPException(400, f"unreadable payment: {str(e)[:300]}") from None
        return await _apply(ctx, "stripe", event.id, payment)

    @r.post("/webhook", response_model=PaymentResult, responses=bad)
    async def generic_webhook(request: Request) -> PaymentResult:
        """Generic signed JSON webhook (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
        `webhook-signature`). Body `{"type": "payment.succeeded", "data": {"payment_id", "account_id",
        "amount_minor" | "amount", "currency", "paid_at"?}}`, or `{"type": "payment.failed", "data":
        {"payment_id", "account_id", "amount_minor"? | "amount"?, "currency"?, "failed_at"?, "failure_code"?,
        "failure_message"?}}`; other types are acknowledged and ignored."""
        ctx = get_context()
        secret = ctx.settings.payments_webhook_secret  # type: ignore[attr-defined]
        if secret is None:
            raise HTTPException(404, "generic payment webhook not configured")
        body = await request.body()  # capped while read (ARREARS_HTTP_MAX_BODY_BYTES, 413)
        try:
            delivery_id = verify_standard(body, request.headers, secret.get_secret_value())
        except InvalidSignature as e:
            log.warning("payment webhook refused", extra={"provider": "generic", "reason": str(e)})
            raise HTTPException(400, f"invalid signature: {e}") from None
        try:
            event = GenericPaymentEvent.model_validate_json(body)
            payment = service.parse_generic(delivery_id, event) or service.parse_generic_failure(
                delivery_id, event
            )
        except (ValidationError, service.PaymentDataError) as e:
            raise HTTPException(400, f"unreadable payment: {str(e)[:300]}") from None
        return await _apply(ctx, "generic", delivery_id, payment)

    return r
