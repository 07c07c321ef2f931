"""Inbound QUO webhooks: replay protection, then the channel-generic inbound path (a reply: inbound/replies.py;
a delivery status or failure: inbound/failures.py) with channel `sms`, provider `quo`."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from arrears_shared.stream.transaction import Transaction
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..inbound.failures import publish_failure, record_delivery_status
from ..inbound.replies import record_inbound
from ..settings import ResponsesSettings
from .failures import CHANNEL, PROVIDER, quo_failure
from .models import DELIVERY_TYPES, MESSAGE_RECEIVED, QuoMessage, QuoWebhookEvent, WebhookAck

log = logging.getLogger(__name__)


async def claim_event(conn: AsyncConnection, schema: str, event_id: str, type_: str) -> bool:
    """Record a webhook event id; False if it was seen before (a replay or a provider retry)."""
    row = await conn.execute(
        text(
            f"INSERT INTO {schema}.webhook_events (id, provider, type) VALUES (:id, 'quo', :t) "
            "ON CONFLICT (id) DO NOTHING RETURNING id"
        ),
        {"id": event_id, "t": type_},
    )
    return row.first() is not None


async def handle_quo_event(
    tx: Transaction,
    event: QuoWebhookEvent,
    *,
    settings: ResponsesSettings | None = None,
    now: datetime | None = None,
    delivery_id: str | None = None,
) -> WebhookAck:
    """Apply one verified webhook inside `tx` (the caller commits). `delivery_id` is the ``webhook-id`` of a
    new-system delivery: the idempotency key QUO documents, claimed besides the event id, so a replayed
    delivery is a no-op whatever its body says."""
    if delivery_id is not None and not await claim_event(tx.conn, tx.schema, f"wh:{delivery_id}", event.type):
        return WebhookAck(status="duplicate")
    if not await claim_event(tx.conn, tx.schema, event.id, event.type):
        return WebhookAck(status="duplicate")
    if event.type == MESSAGE_RECEIVED:
        return await record_inbound_sms(tx, event.message(), settings=settings, now=now)
    if event.type in DELIVERY_TYPES:
        return await record_quo_status(tx, event, now=now)
    return WebhookAck(status="ignored")


async def record_quo_status(tx: Transaction, event: QuoWebhookEvent, *, now: datetime | None) -> WebhookAck:
    """Store a delivery status. A failure (the carrier refused a message QUO accepted) is also published as a
    failed message-sent for its notice, in this transaction (inbound/failures.py). Never a reason to send
    again (the dispatcher's delivery stays settled)."""
    msg = event.message()
    at = event.createdAt or msg.createdAt or now or datetime.now(UTC)
    status = DELIVERY_TYPES[event.type]
    failure = quo_failure(msg.id, msg.errorCode, msg.errorMessage, at) if status == "failed" else None
    await record_delivery_status(
        tx.conn,
        tx.schema,
        msg.id,
        status,
        event.id,
        at,
        channel=CHANNEL,
        provider=PROVIDER,
        failure=failure,
        error_message=msg.errorMessage if failure else None,
    )
    if failure is not None:
        log.warning(
            "QUO reports an SMS not delivered",
            extra={"provider_message_id": msg.id, "error_code": msg.errorCode, "error": msg.errorMessage},
        )
        await publish_failure(tx, failure)
    return WebhookAck(status="delivery_status")


async def record_inbound_sms(
    tx: Transaction,
    msg: QuoMessage,
    *,
    settings: ResponsesSettings | None = None,
    now: datetime | None = None,
) -> WebhookAck:
    if msg.direction not in (None, "incoming", "inbound"):
        return WebhookAck(status="ignored")
    return await record_inbound(
        tx,
        channel=CHANNEL,
        provider=PROVIDER,
        provider_message_id=msg.id,
        from_address=msg.from_,
        to_address=msg.to_first,
        body=msg.content,
        received_at=msg.createdAt or now or datetime.now(UTC),
        settings=settings,
    )
