"""One customer reply on any channel: stored once (`reply_id = <provider>:<provider message id>`), matched to
the account last messaged at that address on that channel (`responses.contacts`, the address normalised by
the channel's address kind and found by its blind index: contacts/lookup.py; never an erased account),
classified, published as `reply-received` and, when due, answered on the same channel (autoreplies), all in
the caller's transaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from arrears_shared.events import ReplyReceived
from arrears_shared.stream.transaction import Transaction
from arrears_shared.vault.cipher import seal_value
from arrears_shared.vault.keys import vault
from sqlalchemy import text

from .. import metrics
from ..autoreplies.out_of_hours import maybe_acknowledge
from ..autoreplies.service import maybe_answer
from ..contacts.addresses import normalize_address
from ..contacts.lookup import find_contact, lock_addresses
from ..intents.classifier import REPLY_COLUMNS, REPLY_VALUES, Classification
from ..intents.registry import ACTIVE
from ..settings import ResponsesSettings
from ..webhooks.models import WebhookAck

log = logging.getLogger(__name__)

MAX_TEXT = 5000


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply as stored: the addresses normalised for its channel, the text capped, the time aware."""

    reply_id: str
    channel: str
    provider_message_id: str
    sender: str
    to: str | None
    body: str
    received_at: datetime


def reply_id_of(provider: str, provider_message_id: str) -> str:
    return f"{provider}:{provider_message_id}"


def classify(r: Reply, contact: Any) -> Classification:
    return ACTIVE.classifier.classify(
        r.body,
        r.received_at,
        channel=r.channel,
        timezone=contact.timezone if contact else None,
        currency=contact.currency if contact else None,
    )


async def store_reply(tx: Transaction, r: Reply, c: Classification, contact: Any) -> bool:
    """Insert the reply; False if it is already stored (the same message delivered again). A matched reply's
    sender and text are sealed with its account's key; an unmatched one has no account to seal them for and
    is kept in clear, to be matched by a person (GET /replies/unmatched)."""
    sender, body = r.sender, r.body
    if contact is not None:
        acc = contact.account_id
        key = (await vault().for_writing(tx.conn, [acc]))[acc]
        sender, body = seal_value(key, acc, sender) or sender, seal_value(key, acc, body) or body
    inserted = await tx.conn.execute(
        text(
            f"""INSERT INTO {tx.schema}.replies (reply_id, channel, provider_message_id, from_address,
                to_address, text, account_id, notice_id, received_at, {REPLY_COLUMNS})
            VALUES (:rid, :ch, :pmid, :frm, :to, :txt, :acc, :nid, :at, {REPLY_VALUES})
            ON CONFLICT (reply_id) DO NOTHING RETURNING reply_id"""
        ),
        {
            "rid": r.reply_id,
            "ch": r.channel,
            "pmid": r.provider_message_id,
            "frm": sender,
            "to": r.to,
            "txt": body,
            "acc": contact.account_id if contact else None,
            "nid": contact.notice_id if contact else None,
            "at": r.received_at,
            **c.columns(),
        },
    )
    return inserted.first() is not None


def reply_event(r: Reply, c: Classification, contact: Any) -> ReplyReceived:
    return ReplyReceived(
        account_id=contact.account_id,
        reply_id=r.reply_id,
        channel=r.channel,
        from_address=r.sender,
        text=r.body,
        provider_message_id=r.provider_message_id,
        in_reply_to_notice_id=contact.notice_id,
        received_at=r.received_at,
        **c.event_fields(),
    )


def _log_reply(r: Reply, c: Classification) -> None:
    log.info(
        "reply received",
        extra={
            "reply_id": r.reply_id,
            "channel": r.channel,
            "intent": c.intent.value,
            "confidence": c.confidence,
            "rule": c.rule,
            "needs_review": c.needs_review,
            "possible_opt_out": c.possible_opt_out,
            "model_version": c.model_version,
        },
    )


async def record_inbound(
    tx: Transaction,
    *,
    channel: str,
    provider: str,
    provider_message_id: str,
    from_address: str,
    to_address: str | None,
    body: str,
    received_at: datetime,
    settings: ResponsesSettings | None,
) -> WebhookAck:
    """Apply one reply inside `tx` (the caller commits): `duplicate`, `unmatched` (stored, no event) or
    `processed` (`reply-received` emitted; the automatic answer too when `settings` allow one)."""
    r = Reply(
        reply_id=reply_id_of(provider, provider_message_id),
        channel=channel,
        provider_message_id=provider_message_id,
        sender=normalize_address(channel, from_address),
        to=normalize_address(channel, to_address) if to_address else None,
        body=body[:MAX_TEXT],
        received_at=received_at if received_at.tzinfo else received_at.replace(tzinfo=UTC),
    )
    if channel in ADDRESS_MATCHED:
        await lock_addresses(tx.conn, [(channel, r.sender)])  # against a `message-sent` indexing it now
    contact = await find_contact(tx, channel, r.sender)
    c = classify(r, contact)
    if not await store_reply(tx, r, c, contact):
        return WebhookAck(status="duplicate", reply_id=r.reply_id)
    metrics.count_review(channel, c.needs_review, c.possible_opt_out)
    if contact is None:
        log.info("inbound reply from an unknown address stored as unmatched", extra={"reply_id": r.reply_id})
        return WebhookAck(status="unmatched", reply_id=r.reply_id, intent=c.intent.value)
    tx.emit(reply_event(r, c, contact), id=f"reply-received:{r.reply_id}")
    if settings is not None:
        await maybe_answer(
            tx,
            settings,
            intent=c.intent,
            channel=channel,
            account_id=contact.account_id,
            reply_id=r.reply_id,
            address=r.sender,
            received_at=r.received_at,
        )
        await maybe_acknowledge(
            tx,
            settings,
            intent=c.intent,
            possible_opt_out=c.possible_opt_out,
            channel=channel,
            account_id=contact.account_id,
            reply_id=r.reply_id,
            address=r.sender,
            reply_text=r.body,
            received_at=r.received_at,
            timezone=contact.timezone,
        )
    _log_reply(r, c)
    return WebhookAck(status="processed", reply_id=r.reply_id, intent=c.intent.value)


# Channels whose replies are matched by the sender's address (email replies match by their thread headers).
ADDRESS_MATCHED = ("sms", "whatsapp")
# A message's `sent_at` is stamped when the provider's answer is back, after the provider accepted it (and the
# customer may already have it): a reply up to this long before that stamp still answers it.
SENT_AT_SLACK = timedelta(seconds=60)


async def match_late_replies(
    tx: Transaction, sent: Sequence[tuple[str, str, datetime]], settings: ResponsesSettings | None
) -> int:
    """Replies stored unmatched only because they arrived before this service had read the message they answer
    (its `message-sent` was still behind a backlog): for each (channel, address, sent_at) just indexed, every
    unmatched reply from that address received after that send (`SENT_AT_SLACK`) is applied now, as if it had
    just arrived (a STOP becomes the opt-out it was; its confirmation is sent). Returns how many were matched."""
    wanted = [(c, a, t - SENT_AT_SLACK) for c, a, t in sent if c in ADDRESS_MATCHED]
    if not wanted:
        return 0
    rows = (
        await tx.conn.execute(
            text(
                f"""DELETE FROM {tx.schema}.replies r
                USING unnest(CAST(:ch AS text[]), CAST(:ad AS text[]), CAST(:at AS timestamptz[])) AS u(ch, ad, at)
                WHERE r.account_id IS NULL AND r.channel = u.ch AND r.from_address = u.ad
                  AND r.received_at >= u.at AND r.reviewed_by IS NULL
                RETURNING r.reply_id, r.channel, r.provider_message_id, r.from_address, r.to_address, r.text,
                          r.received_at"""
            ),
            {"ch": [w[0] for w in wanted], "ad": [w[1] for w in wanted], "at": [w[2] for w in wanted]},
        )
    ).all()
    matched = 0
    for r in sorted(rows, key=lambda r: r.received_at):
        ack = await record_inbound(
            tx,
            channel=r.channel,
            provider=r.reply_id.split(":", 1)[0],
            provider_message_id=r.provider_message_id,
            from_address=r.from_address,
            to_address=r.to_address,
            body=r.text or "",
            received_at=r.received_at,
            settings=settings,
        )
        matched += ack.status == "processed"
    if matched:
        metrics.LATE_MATCHED.inc(matched)
        log.info("unmatched replies matched once their message was read", extra={"matched": matched})
    return matched
