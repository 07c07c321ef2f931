"""A message the provider accepted and then reports as not delivered, on any channel, published as a failed
`message-sent` for its notice.

The dispatcher has already published `message-sent` (`sent`) for the notice; responses publishes a second one
for the same notice with ``status=failed``, the notice's fields kept from the first (tier, step, campaign,
address: ``responses.sent_messages``, found by the provider message id, the address sealed with the account's
key and opened here; nothing is published for an erased account), the adapter's ``reason`` and its
``permanent`` verdict (the address cannot receive the channel: the segmenter marks it invalid and falls back,
the channel's dispatcher refuses later notices to it). Its CloudEvents id is
``<channel>-failed:<provider message id>``, claimed in ``responses.webhook_events``, so it is published at most
once per message however often the provider reports it. A failure that arrives before its `message-sent` is
kept on ``responses.delivery_status`` (with the verdict) and published when that `message-sent` is consumed
(`publish_stored_failures`). A failure never causes a resend.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from arrears_shared.events import DeliveryStatus, MessageSent, Tier
from arrears_shared.inbound import DeliveryFailure
from arrears_shared.stream.transaction import Transaction
from arrears_shared.vault.cipher import open_value
from arrears_shared.vault.keys import vault
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..contacts.lookup import is_erased

log = logging.getLogger(__name__)


def failure_event_id(channel: str, provider_message_id: str) -> str:
    return f"{channel}-failed:{provider_message_id}"


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


async def record_delivery_status(
    conn: AsyncConnection,
    schema: str,
    provider_message_id: str,
    status: str,
    event_id: str,
    at: datetime,
    *,
    channel: str,
    provider: str,
    failure: DeliveryFailure | None = None,
    error_message: str | None = None,
) -> None:
    """Store the latest delivery status of a sent message (later status timestamps win), joined to its notice
    through `message-sent` (or the notice id the failure names)."""
    await conn.execute(
        text(
            f"""INSERT INTO {schema}.delivery_status
                  (provider_message_id, notice_id, account_id, status, event_id, status_at, error_code,
                   error_message, channel, provider, permanent, reason)
                SELECT :pmid, coalesce(sm.notice_id, :nid), sm.account_id, :st, :eid, :at, :ec, :em, :ch, :pv,
                       :perm, :why
                FROM (SELECT 1) one
                LEFT JOIN {schema}.sent_messages sm ON sm.provider_message_id = :pmid
                ON CONFLICT (provider_message_id) DO UPDATE SET
                  status = EXCLUDED.status, event_id = EXCLUDED.event_id, status_at = EXCLUDED.status_at,
                  error_code = EXCLUDED.error_code, error_message = EXCLUDED.error_message,
                  channel = EXCLUDED.channel, provider = EXCLUDED.provider,
                  permanent = EXCLUDED.permanent, reason = EXCLUDED.reason,
                  notice_id = COALESCE({schema}.delivery_status.notice_id, EXCLUDED.notice_id),
                  account_id = COALESCE({schema}.delivery_status.account_id, EXCLUDED.account_id),
                  updated_at = now()
                WHERE {schema}.delivery_status.status_at <= EXCLUDED.status_at"""
        ),
        {
            "pmid": provider_message_id,
            "nid": failure.notice_id if failure else None,
            "st": status,
            "eid": event_id,
            "at": _aware(at),
            "ec": failure.error_code if failure else None,
            "em": error_message,
            "ch": channel,
            "pv": provider,
            "perm": failure.permanent if failure else None,
            "why": failure.reason if failure else None,
        },
    )


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A `sent_messages` row, its address opened."""

    notice_id: str
    account_id: str
    address: str | None
    provider: str | None
    tier: str  # written from the notice's message-sent, never null in practice
    step: int | None
    campaign_id: str | None
    attempts: int | None


async def _sent_message(tx: Transaction, failure: DeliveryFailure) -> SentMessage | None:
    """The sent message the failure is about, its address opened; None if unknown or its account erased
    (nothing is published about an erased account's address)."""
    row = (
        await tx.conn.execute(
            text(
                f"""SELECT notice_id, account_id, address, provider, tier, step, campaign_id, attempts
                FROM {tx.schema}.sent_messages WHERE provider_message_id = :p AND channel = :ch"""
            ),
            {"p": failure.provider_message_id, "ch": failure.channel},
        )
    ).first()
    if row is None:
        return None
    keys = await vault().for_reading(tx.conn, [row.account_id])
    if is_erased(keys, row.account_id):
        return None
    address = open_value(keys.get(row.account_id), row.account_id, row.address)
    return SentMessage(
        row.notice_id,
        row.account_id,
        address,
        row.provider,
        row.tier,
        row.step,
        row.campaign_id,
        row.attempts,
    )


async def _claim(tx: Transaction, failure: DeliveryFailure) -> bool:
    row = await tx.conn.execute(
        text(
            f"INSERT INTO {tx.schema}.webhook_events (id, provider, type) VALUES (:id, :pv, :t) "
            "ON CONFLICT (id) DO NOTHING RETURNING id"
        ),
        {
            "id": failure_event_id(failure.channel, failure.provider_message_id),
            "pv": failure.provider,
            "t": f"{failure.channel}-failed",
        },
    )
    return row.first() is not None


def failed_message_sent(failure: DeliveryFailure, sent: SentMessage) -> MessageSent:
    return MessageSent(
        account_id=sent.account_id,
        notice_id=sent.notice_id,
        channel=failure.channel,
        status=DeliveryStatus.FAILED,
        provider=sent.provider or failure.provider,
        provider_message_id=failure.provider_message_id,
        to=sent.address,
        tier=Tier(sent.tier),
        step=sent.step,
        campaign_id=sent.campaign_id,
        reason=failure.reason[:200],
        permanent=failure.permanent,
        attempts=sent.attempts or 1,
        sent_at=_aware(failure.failed_at),
    )


async def publish_failure(tx: Transaction, failure: DeliveryFailure) -> bool:
    """Emit the failed `message-sent` of a sent message in `tx` (its outbox), once per provider message id.
    False if the message is unknown (its `message-sent` not consumed yet, or stored before the notice's
    fields were kept), its account erased, or the failure was already published."""
    sent = await _sent_message(tx, failure)
    if sent is None or sent.tier is None or sent.address is None or sent.step is None:
        return False
    if failure.notice_id is not None and failure.notice_id != sent.notice_id:
        log.warning(
            "delivery failure names another notice than its message-sent; the message-sent's is used",
            extra={"provider_message_id": failure.provider_message_id, "notice_id": sent.notice_id},
        )
    if not await _claim(tx, failure):
        return False
    tx.emit(
        failed_message_sent(failure, sent),
        id=failure_event_id(failure.channel, failure.provider_message_id),
    )
    log.info(
        "delivery failure published",
        extra={
            "channel": failure.channel,
            "provider_message_id": failure.provider_message_id,
            "notice_id": sent.notice_id,
            "permanent": failure.permanent,
        },
    )
    return True


async def record_failure(tx: Transaction, failure: DeliveryFailure) -> bool:
    """Keep the failure on `delivery_status` and publish it (now, or when its `message-sent` arrives)."""
    log.warning(
        "provider reports a message not delivered",
        extra={
            "channel": failure.channel,
            "provider_message_id": failure.provider_message_id,
            "error_code": failure.error_code,
            "error": failure.reason,
        },
    )
    await record_delivery_status(
        tx.conn,
        tx.schema,
        failure.provider_message_id,
        "failed",
        failure_event_id(failure.channel, failure.provider_message_id),
        failure.failed_at,
        channel=failure.channel,
        provider=failure.provider,
        failure=failure,
        error_message=failure.reason,
    )
    return await publish_failure(tx, failure)


def stored_failure(row: Any) -> DeliveryFailure:
    """A failure kept on `delivery_status` (see record_delivery_status)."""
    return DeliveryFailure(
        channel=row.channel,
        provider=row.provider,
        provider_message_id=row.provider_message_id,
        failed_at=row.status_at,
        reason=row.reason or "not delivered",
        permanent=bool(row.permanent),
        notice_id=row.notice_id,
        error_code=row.error_code,
    )


async def publish_stored_failures(tx: Transaction, provider_message_ids: Sequence[str]) -> None:
    """Publish the failures that arrived before the `message-sent` of these messages (once each)."""
    rows = await tx.conn.execute(
        text(
            f"""SELECT provider_message_id, channel, provider, status_at, reason, permanent, notice_id,
                error_code FROM {tx.schema}.delivery_status
            WHERE status = 'failed' AND channel IS NOT NULL
              AND provider_message_id = ANY(CAST(:pm AS text[]))
            ORDER BY provider_message_id"""
        ),
        {"pm": list(provider_message_ids)},
    )
    for row in rows.all():
        await publish_failure(tx, stored_failure(row))
