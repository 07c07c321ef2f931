"""Inbound email: match to an account (References / In-Reply-To, Gmail thread, sender address by its blind
index; never an erased account), classify, store (sender and text sealed with the account's key when
matched), and emit `reply-received` (a reply), a failed `message-sent` (a hard bounce) or nothing (an
automatic reply, recorded only). Each Gmail message is handled once (`reply_id = gmail:<id>`). A reply that
arrives while the team is closed is acknowledged in the same transaction (autoreplies/out_of_hours.py), unless
it came through a mailing list or from an address nothing automatic is sent to (mail loops, RFC 3834)."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from arrears_shared.events import DeliveryStatus, MessageSent, ReplyReceived, Tier
from arrears_shared.stream.transaction import Transaction
from arrears_shared.vault.cipher import open_value, seal_value
from arrears_shared.vault.keys import vault
from sqlalchemy import text

from .. import metrics
from ..autoreplies.out_of_hours import maybe_acknowledge, no_ack_sender
from ..contacts.addresses import normalize_email
from ..contacts.lookup import find_contact, is_live
from ..intents.classifier import REPLY_COLUMNS, REPLY_VALUES
from ..intents.registry import ACTIVE
from ..replies.debtor import debtor_of
from ..settings import ResponsesSettings
from .parse import EmailKind, InboundEmail

log = logging.getLogger(__name__)
_RE_PREFIX = re.compile(r"^\s*(?:(?:re|fw|fwd|aw|rv|tr)\s*:\s*)+", re.I)
_MESSAGE_ID = re.compile(r"^<[\x21-\x3b\x3d\x3f-\x7e]{1,500}>$")  # one RFC 5322 msg-id, nothing else


def msgid_hash(notice_id: str) -> str:
    """The hash part of the Message-ID dispatcher-email gives a notice (`<hash.notice@domain>`)."""
    return hashlib.sha256(notice_id.encode()).hexdigest()[:40]


@dataclass(frozen=True)
class Match:
    account_id: str
    notice_id: str | None
    by: str  # references | thread | address


async def match_email(
    tx: Transaction, email: InboundEmail, thread_id: str | None, sender: str | None
) -> tuple[Match | None, object | None]:
    """The account an email belongs to and the sent notice row it answers (if known). An erased account is
    never matched (by any means): its email is unmatched, as a stranger's."""
    s = tx.schema
    for h in email.notice_hashes:
        row = (
            await tx.conn.execute(text(f"SELECT * FROM {s}.email_sent WHERE msgid_hash = :h"), {"h": h})
        ).first()
        if row and await is_live(tx.conn, row.account_id):
            return Match(row.account_id, row.notice_id, "references"), row
    if thread_id:
        row = (
            await tx.conn.execute(
                text(f"SELECT * FROM {s}.email_sent WHERE thread_id = :t ORDER BY sent_at DESC LIMIT 1"),
                {"t": thread_id},
            )
        ).first()
        if row and await is_live(tx.conn, row.account_id):
            return Match(row.account_id, row.notice_id, "thread"), row
    if sender:
        contact = await find_contact(tx, "email", normalize_email(sender))
        if contact:
            sent = (
                await tx.conn.execute(
                    text(f"SELECT * FROM {s}.email_sent WHERE notice_id = :n"), {"n": contact.notice_id}
                )
            ).first()
            return Match(contact.account_id, contact.notice_id, "address"), sent
    return None, None


async def _sealed(tx: Transaction, match: Match | None, *values: str | None) -> list[str | None]:
    """`values` sealed with the matched account's key; as they are (in clear) for an unmatched email, which
    has no account: it is kept for a person to match (GET /replies/unmatched)."""
    if match is None:
        return list(values)
    key = (await vault().for_writing(tx.conn, [match.account_id]))[match.account_id]
    return [seal_value(key, match.account_id, v) for v in values]


async def _opened_address(tx: Transaction, account_id: str, sealed: str | None) -> str | None:
    keys = await vault().for_reading(tx.conn, [account_id])
    return open_value(keys.get(account_id), account_id, sealed)


async def record_email(
    tx: Transaction,
    email: InboundEmail,
    *,
    gmail_id: str,
    thread_id: str | None,
    received_at: datetime | None = None,
    settings: ResponsesSettings | None = None,
) -> str:
    """Apply one inbound email inside `tx`. Returns the outcome (duplicate, reply, auto_reply, bounce,
    unmatched). With `settings`, an out-of-hours reply is acknowledged as they say."""
    s = tx.schema
    received_at = received_at or datetime.now(UTC)
    reply_id = f"gmail:{gmail_id}"
    exists = (
        await tx.conn.execute(text(f"SELECT 1 FROM {s}.replies WHERE reply_id = :r"), {"r": reply_id})
    ).first()
    if exists:
        return "duplicate"
    sender = email.bounce_recipient if email.kind is EmailKind.BOUNCE else email.from_address
    match, sent = await match_email(tx, email, thread_id, sender)
    body = email.text or _RE_PREFIX.sub("", email.subject)
    debtor = await debtor_of(tx, match.account_id) if match else None
    c = ACTIVE.classifier.classify(
        body,
        received_at,
        channel="email",
        timezone=debtor.timezone if debtor else None,
        currency=debtor.currency if debtor else None,
    )
    columns = c.columns()
    if email.kind is not EmailKind.REPLY:
        columns.update(rule=email.kind.value, review=False, poo=False)
    stored_from, stored_text = await _sealed(tx, match, email.from_address, body[:5000])
    await tx.conn.execute(
        text(
            f"""INSERT INTO {s}.replies (reply_id, channel, provider_message_id, from_address, to_address,
                text, account_id, notice_id, received_at, kind, matched_by, {REPLY_COLUMNS})
            VALUES (:rid, 'email', :pmid, :frm, :to, :txt, :acc, :nid, :at, :kind, :by, {REPLY_VALUES})
            ON CONFLICT (reply_id) DO NOTHING"""
        ),
        {
            "rid": reply_id,
            "pmid": gmail_id,
            "frm": stored_from,
            "to": email.to_addresses[0] if email.to_addresses else None,
            "txt": stored_text,
            "acc": match.account_id if match else None,
            "nid": match.notice_id if match else None,
            "at": received_at,
            "kind": email.kind.value,
            "by": match.by if match else None,
            **columns,
        },
    )
    metrics.REPLIES.labels(
        "email",
        c.intent.value if email.kind is EmailKind.REPLY else email.kind.value,
        "matched" if match else "unmatched",
    ).inc()
    if email.kind is EmailKind.REPLY:
        metrics.count_review("email", c.needs_review, c.possible_opt_out)
    if match is None:
        return "unmatched"
    if email.kind is EmailKind.AUTO_REPLY:
        return "auto_reply"  # not a customer response: no event, the no-response clock keeps running
    if email.kind is EmailKind.BOUNCE:
        to = None
        if email.hard_bounce and sent is not None:
            # the address the notice was sent to, sealed in `email_sent`
            to = await _opened_address(tx, match.account_id, sent.address)  # type: ignore[attr-defined]
        if email.hard_bounce and sent is not None and to:
            tx.emit(
                MessageSent(
                    account_id=match.account_id,
                    notice_id=sent.notice_id,  # type: ignore[attr-defined]
                    channel="email",
                    status=DeliveryStatus.FAILED,
                    provider="gmail",
                    provider_message_id=gmail_id,
                    thread_id=thread_id,
                    to=to,
                    tier=Tier(sent.tier),  # type: ignore[attr-defined]
                    step=sent.step,  # type: ignore[attr-defined]
                    campaign_id=sent.campaign_id,  # type: ignore[attr-defined]
                    reason=f"bounced: {email.bounce_status or '5.0.0'}",
                    permanent=True,
                    sent_at=received_at,
                ),
                id=f"responses:bounce:{sent.notice_id}",  # type: ignore[attr-defined]
            )
        return "bounce"
    tx.emit(
        ReplyReceived(
            account_id=match.account_id,
            reply_id=reply_id,
            channel="email",
            from_address=email.from_address,
            text=body[:5000],
            provider_message_id=gmail_id,
            in_reply_to_notice_id=match.notice_id,
            received_at=received_at,
            **c.event_fields(),
        ),
        id=f"reply-received:{reply_id}",
    )
    if settings is not None and not email.mailing_list and not no_ack_sender(email.from_address):
        await maybe_acknowledge(
            tx,
            settings,
            intent=c.intent,
            possible_opt_out=c.possible_opt_out,
            channel="email",
            account_id=match.account_id,
            reply_id=reply_id,
            address=email.from_address,
            reply_text=body,
            received_at=received_at,
            timezone=debtor.timezone if debtor else None,
            in_reply_to=email.message_id if _MESSAGE_ID.match(email.message_id or "") else None,
        )
    return "reply"
