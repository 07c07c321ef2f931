"""Consumes `message-sent`: builds the contact index (channel + address -> account, latest notice; the address
normalised by the channel's address kind) and the provider message id -> notice map used for delivery status
webhooks (with the notice's fields, so a provider's failure report can be published as a failed
`message-sent`: inbound/failures.py). Only `sent` events are indexed; the failed `message-sent` responses
publishes itself comes back here and is skipped.

Every address is sealed with its account's key (arrears_shared.vault); the contact index is looked up by the
address's blind index (contacts/lookup.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from datetime import datetime

from arrears_shared.cloudevents import Envelope
from arrears_shared.events import DeliveryStatus, MessageSent
from arrears_shared.stream.transaction import Transaction
from arrears_shared.vault.cipher import seal_value
from arrears_shared.vault.keys import vault
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import text

from ..gmail.service import msgid_hash
from ..inbound.failures import publish_stored_failures
from ..inbound.replies import ADDRESS_MATCHED, match_late_replies
from ..settings import ResponsesSettings
from .addresses import normalize_address
from .lookup import address_index, erased_accounts, lock_addresses


def contact_address(ev: MessageSent) -> str:
    return normalize_address(ev.channel, ev.to)


def message_sent_handler(
    settings: ResponsesSettings | None,
) -> Callable[[Sequence[Envelope], Transaction], Awaitable[None]]:
    """The `message-sent` consumer; `settings` decide the automatic answers of replies matched late."""

    async def handle(events: Sequence[Envelope], tx: Transaction) -> None:
        await handle_message_sent(events, tx, settings)

    handle.__name__ = "handle_message_sent"
    return handle


async def handle_message_sent(
    events: Sequence[Envelope], tx: Transaction, settings: ResponsesSettings | None = None
) -> None:
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
    if not (latest or sent or emails):
        return
    # one key per account of the batch (created in this transaction where missing): addresses are sealed
    accounts = list(dict.fromkeys(e.account_id for e in (*latest.values(), *sent.values(), *emails.values())))
    erased = await erased_accounts(tx.conn, accounts)
    keys = await vault().for_writing(tx.conn, accounts)
    if emails:
        await index_emails(tx, list(emails.values()), keys)
    if latest:
        await lock_addresses(tx.conn, [k for k in latest if k[0] in ADDRESS_MATCHED])  # see lock_addresses
        await index_contacts(tx, list(latest.items()), keys, erased)
        live = [(ch, addr, e.sent_at) for (ch, addr), e in latest.items() if e.account_id not in erased]
        await match_late_replies(tx, live, settings)
    if sent:
        await index_sent(tx, list(sent.items()), keys)


async def index_emails(tx: Transaction, emails: list[MessageSent], keys: Mapping[str, AESGCM]) -> None:
    """The Message-ID hash and Gmail thread of each email, for matching replies (gmail/service.py); the
    address sealed with the account's key."""
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
                "ad": seal_value(keys[e.account_id], e.account_id, contact_address(e)),
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


@dataclass(frozen=True, slots=True)
class ContactRow:
    channel: str
    address: str  # normalised, in clear (sealed when written)
    account_id: str
    notice_id: str
    sent_at: datetime
    timezone: str | None
    currency: str | None


async def _take_plaintext_rows(tx: Transaction, keys: list[tuple[str, str]]) -> list[ContactRow]:
    """Remove and return the rows written before sealing (no `address_bidx`, the address in clear) for these
    (channel, address) pairs: they are written again, sealed, with the batch."""
    rows = await tx.conn.execute(
        text(
            f"""DELETE FROM {tx.schema}.contacts c
            USING unnest(CAST(:ch AS text[]), CAST(:ad AS text[])) AS u(ch, ad)
            WHERE c.address_bidx IS NULL AND c.channel = u.ch AND c.address = u.ad
            RETURNING c.channel, c.address, c.account_id, c.notice_id, c.sent_at, c.timezone, c.currency"""
        ),
        {"ch": [k[0] for k in keys], "ad": [k[1] for k in keys]},
    )
    return [ContactRow(*r) for r in rows.all()]


async def index_contacts(
    tx: Transaction,
    rows: list[tuple[tuple[str, str], MessageSent]],
    keys: Mapping[str, AESGCM],
    erased: AbstractSet[str] = frozenset(),
) -> None:
    """(channel, address) -> the account and notice last sent there (later sends win), found by the address's
    blind index, the address sealed with that account's key. An erased account is not indexed."""
    s = tx.schema
    merged = {
        k: ContactRow(k[0], k[1], e.account_id, e.notice_id, e.sent_at, e.timezone, e.currency)
        for k, e in rows
    }
    legacy = await _take_plaintext_rows(tx, list(merged))
    if legacy:
        # an address indexed before sealing: the later of the two wins (as the upsert below decides)
        erased = erased | await erased_accounts(tx.conn, list({r.account_id for r in legacy}))
        keys = {**keys, **await vault().for_writing(tx.conn, list({r.account_id for r in legacy}))}
        for old in legacy:
            new = merged[(old.channel, old.address)]
            if old.account_id in erased:
                continue
            if old.sent_at > new.sent_at or new.account_id in erased:
                merged[(old.channel, old.address)] = old
            else:
                merged[(old.channel, old.address)] = replace(
                    new, timezone=new.timezone or old.timezone, currency=new.currency or old.currency
                )
    # one row per blind index (it normalises a number further than the contact address: "14155550100" and
    # "+14155550100" are one), the latest send
    by_index: dict[tuple[str, str | None], ContactRow] = {}
    for r in sorted(merged.values(), key=lambda r: r.sent_at):
        if r.account_id not in erased:
            by_index[(r.channel, address_index(r.channel, r.address))] = r
    live = list(by_index.values())
    if not live:
        return
    await tx.conn.execute(
        text(
            f"""INSERT INTO {s}.contacts (channel, address, address_bidx, account_id, notice_id, sent_at,
                timezone, currency)
            SELECT * FROM unnest(CAST(:ch AS text[]), CAST(:ad AS text[]), CAST(:bx AS text[]),
                                 CAST(:acc AS text[]), CAST(:nid AS text[]), CAST(:at AS timestamptz[]),
                                 CAST(:tz AS text[]), CAST(:cur AS text[]))
            ON CONFLICT (channel, address_bidx) DO UPDATE SET address = EXCLUDED.address,
                account_id = EXCLUDED.account_id, notice_id = EXCLUDED.notice_id, sent_at = EXCLUDED.sent_at,
                timezone = coalesce(EXCLUDED.timezone, {s}.contacts.timezone),
                currency = coalesce(EXCLUDED.currency, {s}.contacts.currency)
            WHERE {s}.contacts.sent_at <= EXCLUDED.sent_at"""
        ),
        {
            "ch": [r.channel for r in live],
            "ad": [seal_value(keys[r.account_id], r.account_id, r.address) for r in live],
            "bx": [address_index(r.channel, r.address) for r in live],
            "acc": [r.account_id for r in live],
            "nid": [r.notice_id for r in live],
            "at": [r.sent_at for r in live],
            "tz": [r.timezone for r in live],
            "cur": [r.currency for r in live],
        },
    )


async def index_sent(
    tx: Transaction, items: list[tuple[str, MessageSent]], keys: Mapping[str, AESGCM]
) -> None:
    """Provider message id -> the notice's fields (the address sealed with the account's key); then what a
    provider reported before this event."""
    s = tx.schema
    pmids = [k for k, _ in items]
    params = {
        "pm": pmids,
        "ch": [e.channel for _, e in items],
        "acc": [e.account_id for _, e in items],
        "nid": [e.notice_id for _, e in items],
        "at": [e.sent_at for _, e in items],
        # as the dispatcher sent it (it matches its own deliveries), sealed
        "ad": [seal_value(keys[e.account_id], e.account_id, e.to) for _, e in items],
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
