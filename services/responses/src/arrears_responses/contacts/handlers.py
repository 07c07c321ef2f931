"""Consumes `message-sent`: builds the contact index (channel + address -> account, latest notice; the address
normalised by the channel's address kind) and the provider message id -> notice map used for delivery status
webhooks (with the notice's fields, so a provider's failure report can be published as a failed
`message-sent`: inbound/failures.py). Only `sent` events are indexed; the failed `message-sent` responses
publishes itself comes back here and is skipped."""

from __future__ import annotations

from collections.abc import Sequence

from arrears_shared.cloudevents import Envelope
from arrears_shared.events import DeliveryStatus, MessageSent
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import text

from ..gmail.service import msgid_hash
from ..inbound.failures import publish_stored_failures
from .addresses import normalize_address


def contact_address(ev: MessageSent) -> str:
    return normalize_address(ev.channel, ev.to)


async def handle_message_sent(events: Sequence[Envelope], tx: Transaction) -> None:
    latest: dict[tuple[str, str], MessageSent] = {}
    sent: dict[str, MessageSent] = {}
    emails: dict[str, MessageSent] = {}
    for env in events:
        ev = env.data
        if not isinstance(ev, MessageSent) or ev.status is not DeliveryStatus.SENT:
            continue
        key = (ev.channel, contact_address(ev))
        if key not in latest or latest[key].sent_at <= ev.sent_at:
            latest[key] = ev
        if ev.provider_message_id:
            sent[ev.provider_message_id] = ev
        if ev.channel == "email":
            emails[ev.notice_id] = ev
    if emails:
        await index_emails(tx, list(emails.values()))
    if latest:
        await index_contacts(tx, list(latest.items()))
    if sent:
        await index_sent(tx, list(sent.items()))


async def index_emails(tx: Transaction, emails: list[MessageSent]) -> None:
    """The Message-ID hash and Gmail thread of each email, for matching replies (gmail/service.py)."""
    s = tx.schema
    await tx.conn.execute(
        text(
            f"""INSERT INTO {s}.email_sent (notice_id, account_id, address, msgid_hash, thread_id, tier, step,
                campaign_id, sent_at)
            VALUES (:n, :a, :ad, :h, :t, :tier, :step, :c, :at) ON CONFLICT (notice_id) DO NOTHING"""
        ),
        [
            {
                "n": e.notice_id,
                "a": e.account_id,
                "ad": contact_address(e),
                "h": msgid_hash(e.notice_id),
                "t": e.thread_id,
                "tier": e.tier.value,
                "step": e.step,
                "c": e.campaign_id,
                "at": e.sent_at,
            }
            for e in emails
        ],
    )


async def index_contacts(tx: Transaction, rows: list[tuple[tuple[str, str], MessageSent]]) -> None:
    """(channel, address) -> the account and notice last sent there (later sends win)."""
    s = tx.schema
    await tx.conn.execute(
        text(
            f"""INSERT INTO {s}.contacts (channel, address, account_id, notice_id, sent_at, timezone, currency)
            SELECT * FROM unnest(CAST(:ch AS text[]), CAST(:ad AS text[]), CAST(:acc AS text[]),
                                 CAST(:nid AS text[]), CAST(:at AS timestamptz[]), CAST(:tz AS text[]),
                                 CAST(:cur AS text[]))
            ON CONFLICT (channel, address) DO UPDATE SET account_id = EXCLUDED.account_id,
                notice_id = EXCLUDED.notice_id, sent_at = EXCLUDED.sent_at,
                timezone = coalesce(EXCLUDED.timezone, {s}.contacts.timezone),
                currency = coalesce(EXCLUDED.currency, {s}.contacts.currency)
            WHERE {s}.contacts.sent_at <= EXCLUDED.sent_at"""
        ),
        {
            "ch": [k[0] for k, _ in rows],
            "ad": [k[1] for k, _ in rows],
            "acc": [e.account_id for _, e in rows],
            "nid": [e.notice_id for _, e in rows],
            "at": [e.sent_at for _, e in rows],
            "tz": [e.timezone for _, e in rows],
            "cur": [e.currency for _, e in rows],
        },
    )


async def index_sent(tx: Transaction, items: list[tuple[str, MessageSent]]) -> None:
    """Provider message id -> the notice's fields; then what a provider reported before this event."""
    s = tx.schema
    pmids = [k for k, _ in items]
    params = {
        "pm": pmids,
        "ch": [e.channel for _, e in items],
        "acc": [e.account_id for _, e in items],
        "nid": [e.notice_id for _, e in items],
        "at": [e.sent_at for _, e in items],
        "ad": [e.to for _, e in items],  # as the dispatcher sent it: it matches its own deliveries
        "pv": [e.provider for _, e in items],
        "tier": [e.tier.value for _, e in items],
        "step": [e.step for _, e in items],
        "cmp": [e.campaign_id for _, e in items],
        "att": [e.attempts for _, e in items],
    }
    await tx.conn.execute(
        text(
            f"""INSERT INTO {s}.sent_messages (provider_message_id, channel, account_id, notice_id, sent_at,
                address, provider, tier, step, campaign_id, attempts)
            SELECT * FROM unnest(CAST(:pm AS text[]), CAST(:ch AS text[]), CAST(:acc AS text[]),
                                 CAST(:nid AS text[]), CAST(:at AS timestamptz[]), CAST(:ad AS text[]),
                                 CAST(:pv AS text[]), CAST(:tier AS text[]), CAST(:step AS integer[]),
                                 CAST(:cmp AS text[]), CAST(:att AS integer[]))
            ON CONFLICT (provider_message_id) DO NOTHING"""
        ),
        params,
    )
    # a delivery webhook may have arrived before the message-sent event: attach the notice now
    await tx.conn.execute(
        text(
            f"""UPDATE {s}.delivery_status d SET notice_id = sm.notice_id, account_id = sm.account_id
            FROM {s}.sent_messages sm
            WHERE d.provider_message_id = sm.provider_message_id AND d.account_id IS NULL
              AND d.provider_message_id = ANY(CAST(:pm AS text[]))"""
        ),
        {"pm": pmids},
    )
    # ... and a failure reported before its message-sent is published now (once: inbound/failures.py)
    await publish_stored_failures(tx, pmids)
