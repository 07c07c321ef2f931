"""Inbound QUO webhooks: replay protection, reply matching + classification, delivery status."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

from arrears_shared.events import Channel, ReplyReceived
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import metrics
from ..autoreplies.service import maybe_answer
from ..intents.classifier import REPLY_COLUMNS, REPLY_VALUES
from ..intents.registry import ACTIVE
from ..settings import ResponsesSettings
from .failures import publish_sms_failure
from .models import DELIVERY_TYPES, MESSAGE_RECEIVED, QuoMessage, QuoWebhookEvent, WebhookAck

log = logging.getLogger(__name__)

_PHONE_JUNK = re.compile(r"[\s().-]")
MAX_TEXT = 5000


def normalize_phone(raw: str) -> str:
    """Canonical E.164-ish form used as the contact index key (`+1 (415) 555-0100` -> `+14155550100`)."""
    p = _PHONE_JUNK.sub("", raw.strip())
    if p.startswith("00"):
        p = "+" + p[2:]
    return p


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
        msg = event.message()
        at = event.createdAt or msg.createdAt or now or datetime.now(UTC)
        status = DELIVERY_TYPES[event.type]
        failed = status == "failed"
        await record_delivery_status(
            tx.conn,
            tx.schema,
            msg.id,
            status,
            event.id,
            at,
            error_code=str(msg.errorCode) if failed and msg.errorCode is not None else None,
            error_message=msg.errorMessage if failed else None,
        )
        if failed:
            # The carrier refused a message QUO accepted: recorded against the notice (joined through
            # message-sent) and published as a failed message-sent for that notice (failures.py), in this
            # transaction. Never a reason to send again (the dispatcher's delivery stays settled).
            log.warning(
                "QUO reports an SMS not delivered",
                extra={"provider_message_id": msg.id, "error_code": msg.errorCode, "error": msg.errorMessage},
            )
            await publish_sms_failure(tx, msg.id, msg.errorCode, msg.errorMessage, at)
        return WebhookAck(status="delivery_status")
    return WebhookAck(status="ignored")


async def record_inbound_sms(
    tx: Transaction,
    msg: QuoMessage,
    *,
    settings: ResponsesSettings | None = None,
    now: datetime | None = None,
) -> WebhookAck:
    if msg.direction not in (None, "incoming", "inbound"):
        return WebhookAck(status="ignored")
    s = tx.schema
    sender = normalize_phone(msg.from_)
    received_at = msg.createdAt or now or datetime.now(UTC)
    if received_at.tzinfo is None:
        received_at = received_at.replace(tzinfo=UTC)
    body = msg.content[:MAX_TEXT]
    contact = (
        await tx.conn.execute(
            text(
                f"SELECT account_id, notice_id, timezone, currency FROM {s}.contacts"
                " WHERE channel = 'sms' AND address = :a"
            ),
            {"a": sender},
        )
    ).first()
    c = ACTIVE.classifier.classify(
        body,
        received_at,
        channel="sms",
        timezone=contact.timezone if contact else None,
        currency=contact.currency if contact else None,
    )
    reply_id = f"quo:{msg.id}"
    inserted = (
        await tx.conn.execute(
            text(
                f"""INSERT INTO {s}.replies (reply_id, channel, provider_message_id, from_address, to_address,
                    text, account_id, notice_id, received_at, {REPLY_COLUMNS})
                VALUES (:rid, 'sms', :pmid, :frm, :to, :txt, :acc, :nid, :at, {REPLY_VALUES})
                ON CONFLICT (reply_id) DO NOTHING RETURNING reply_id"""
            ),
            {
                "rid": reply_id,
                "pmid": msg.id,
                "frm": sender,
                "to": normalize_phone(msg.to_first) if msg.to_first else None,
                "txt": body,
                "acc": contact.account_id if contact else None,
                "nid": contact.notice_id if contact else None,
                "at": received_at,
                **c.columns(),
            },
        )
    ).first()
    if inserted is None:  # the same message under another webhook event id
        return WebhookAck(status="duplicate", reply_id=reply_id)
    metrics.count_review("sms", c.needs_review, c.possible_opt_out)
    if contact is None:
        log.info("inbound sms from an unknown number stored as unmatched", extra={"reply_id": reply_id})
        return WebhookAck(status="unmatched", reply_id=reply_id, intent=c.intent.value)
    tx.emit(
        ReplyReceived(
            account_id=contact.account_id,
            reply_id=reply_id,
            channel=Channel.SMS,
            from_address=sender,
            text=body,
            provider_message_id=msg.id,
            in_reply_to_notice_id=contact.notice_id,
            received_at=received_at,
            **c.event_fields(),
        ),
        id=f"reply-received:{reply_id}",
    )
    if settings is not None:
        await maybe_answer(
            tx,
            settings,
            intent=c.intent,
            account_id=contact.account_id,
            reply_id=reply_id,
            address=sender,
            received_at=received_at,
        )
    log.info(
        "reply received",
        extra={
            "reply_id": reply_id,
            "intent": c.intent.value,
            "confidence": c.confidence,
            "rule": c.rule,
            "needs_review": c.needs_review,
            "possible_opt_out": c.possible_opt_out,
            "model_version": c.model_version,
        },
    )
    return WebhookAck(status="processed", reply_id=reply_id, intent=c.intent.value)


async def record_delivery_status(
    conn: AsyncConnection,
    schema: str,
    provider_message_id: str,
    status: str,
    event_id: str,
    at: datetime,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
) -> None:
    """Store the latest delivery status of a sent message (later status timestamps win)."""
    await conn.execute(
        text(
            f"""INSERT INTO {schema}.delivery_status
                  (provider_message_id, notice_id, account_id, status, event_id, status_at, error_code,
                   error_message)
                SELECT :pmid, sm.notice_id, sm.account_id, :st, :eid, :at, :ec, :em
                FROM (SELECT 1) one
                LEFT JOIN {schema}.sent_messages sm ON sm.provider_message_id = :pmid
                ON CONFLICT (provider_message_id) DO UPDATE SET
                  status = EXCLUDED.status, event_id = EXCLUDED.event_id, status_at = EXCLUDED.status_at,
                  error_code = EXCLUDED.error_code, error_message = EXCLUDED.error_message,
                  notice_id = COALESCE({schema}.delivery_status.notice_id, EXCLUDED.notice_id),
                  account_id = COALESCE({schema}.delivery_status.account_id, EXCLUDED.account_id),
                  updated_at = now()
                WHERE {schema}.delivery_status.status_at <= EXCLUDED.status_at"""
        ),
        {
            "pmid": provider_message_id,
            "st": status,
            "eid": event_id,
            "at": at,
            "ec": error_code,
            "em": error_message,
        },
    )
