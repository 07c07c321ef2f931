"""Automatic answers to a reply: the HELP text and the one confirmation of an opt-out.

They go out on the channel the reply came on, along the normal path (outbox -> `notice-due` -> that
channel's dispatcher) as a `NoticeDue` whose `purpose` is not `dunning`: the dispatcher sends its `text` as
is, exempt from the opt-out it confirms and from the contact-hours gate. Its `due_at` is the time of the
customer's message (a channel with a customer-service window answers in free text only inside it). Only channels addressed by a phone number are answered (`answers_on`); an email reply
is read by a person. Never twice: the notice id is derived from the reply id (the dispatcher's deliveries
are keyed by it), the confirmation is recorded once per channel and address (unique index) in the same
transaction as the reply, and HELP is answered at most once per address per
`ARREARS_RESPONSES_HELP_INTERVAL_S`. The address is stored sealed with the account's key and found by its
blind index (contacts/lookup.py). An erased account is never answered.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from arrears_shared.channels import kind_of
from arrears_shared.events import AgingBucket, Intent, NoticeDue, Tier
from arrears_shared.stream.transaction import Transaction
from arrears_shared.vault.cipher import seal_value
from arrears_shared.vault.keys import vault
from sqlalchemy import text

from ..contacts.lookup import address_index, is_live
from ..settings import ResponsesSettings

PURPOSE_BY_INTENT = {Intent.OPT_OUT: "opt_out_confirmation", Intent.HELP: "help"}
PRIORITY = 1000  # ahead of any dunning backlog


def answers_on(channel: str) -> bool:
    """Whether replies on `channel` get automatic answers: text-message channels (a phone address)."""
    return kind_of(channel) == "phone"


def auto_reply_notice_id(account_id: str, reply_id: str, purpose: str) -> str:
    return f"{account_id}:auto:{purpose}:{reply_id}"


def answer_text(settings: ResponsesSettings, purpose: str) -> str:
    template = (
        settings.responses_opt_out_confirmation_text
        if purpose == "opt_out_confirmation"
        else settings.responses_help_text
    )
    return template.replace("{brand}", settings.responses_brand_name)


def answer_notice(
    settings: ResponsesSettings,
    purpose: str,
    *,
    account_id: str,
    reply_id: str,
    address: str,
    received_at: datetime,
    channel: str = "sms",
    answered_at: datetime | None = None,
) -> NoticeDue:
    """The `notice-due` that makes `channel`'s dispatcher send the automatic answer. `received_at` is the
    customer's message time (`due_at`); it expires `ARREARS_RESPONSES_AUTO_REPLY_EXPIRY_S` after
    `answered_at` (when the answer was decided; default: `received_at`)."""
    decided = answered_at or received_at
    return automatic_notice(
        account_id=account_id,
        notice_id=auto_reply_notice_id(account_id, reply_id, purpose),
        channel=channel,
        address=address,
        purpose=purpose,
        text=answer_text(settings, purpose),
        received_at=received_at,
        expires_at=decided + timedelta(seconds=settings.responses_auto_reply_expiry_s),
    )


def automatic_notice(
    *,
    account_id: str,
    notice_id: str,
    channel: str,
    address: str,
    purpose: str,
    text: str,
    received_at: datetime,
    expires_at: datetime,
    **extra: Any,
) -> NoticeDue:
    """A `notice-due` that answers the customer's own message with `text` (no template, no balance), due at
    the message's time, ahead of any dunning backlog. `extra`: further NoticeDue fields (timezone, locale,
    in_reply_to)."""
    return NoticeDue(
        account_id=account_id,
        notice_id=notice_id,
        policy_id="auto-reply",
        policy_version=1,
        step=0,
        tier=Tier.REMINDER,
        channel=channel,
        template_id=f"auto-reply.{purpose}",
        priority=PRIORITY,
        to=address,
        # an automatic answer carries no balance: these fields are required by the contract, unused here
        customer_name="",
        balance_minor=0,
        currency="USD",
        days_past_due=0,
        aging_bucket=AgingBucket.CURRENT,
        timezone=extra.pop("timezone", None),
        due_at=received_at,
        expires_at=expires_at,
        purpose=purpose,
        text=text,
        **extra,
    )


async def _help_answered_since(tx: Transaction, channel: str, address: str, since: datetime) -> bool:
    row = await tx.conn.execute(
        text(
            f"""SELECT 1 FROM {tx.schema}.auto_replies
            WHERE channel = :ch AND (address_bidx = :b OR (address_bidx IS NULL AND address = :a))
              AND purpose = 'help' AND created_at > :since LIMIT 1"""
        ),
        {"ch": channel, "b": address_index(channel, address), "a": address, "since": since},
    )
    return row.first() is not None


async def _confirmed_before_sealing(tx: Transaction, channel: str, address: str) -> bool:
    """Whether this address's opt-out was confirmed on this channel by a row written before addresses were
    sealed (no `address_bidx`: the unique index on it cannot see that row)."""
    row = await tx.conn.execute(
        text(
            f"""SELECT 1 FROM {tx.schema}.auto_replies WHERE channel = :ch AND address_bidx IS NULL
              AND address = :a AND purpose = 'opt_out_confirmation' LIMIT 1"""
        ),
        {"ch": channel, "a": address},
    )
    return row.first() is not None


async def _claim(tx: Transaction, notice: NoticeDue, reply_id: str, at: datetime) -> bool:
    """Record the answer (the address sealed with the account's key, found by its blind index); False if this
    address's opt-out was already confirmed on this channel (or this reply already answered)."""
    acc = notice.account_id
    if notice.purpose == "opt_out_confirmation" and await _confirmed_before_sealing(
        tx, notice.channel, notice.to
    ):
        return False
    key = (await vault().for_writing(tx.conn, [acc]))[acc]
    row = await tx.conn.execute(
        text(
            f"""INSERT INTO {tx.schema}.auto_replies (notice_id, reply_id, purpose, channel, address,
                address_bidx, account_id, created_at)
            VALUES (:n, :r, :p, :ch, :a, :b, :acc, :at) ON CONFLICT DO NOTHING RETURNING 1"""
        ),
        {
            "n": notice.notice_id,
            "r": reply_id,
            "p": notice.purpose,
            "ch": notice.channel,
            "a": seal_value(key, acc, notice.to),
            "b": address_index(notice.channel, notice.to),
            "acc": acc,
            "at": at,
        },
    )
    return row.first() is not None


async def maybe_answer(
    tx: Transaction,
    settings: ResponsesSettings,
    *,
    intent: Intent,
    channel: str,
    account_id: str,
    reply_id: str,
    address: str,
    received_at: datetime,
    answered_at: datetime | None = None,
) -> str | None:
    """Emit the automatic answer to a reply on `channel` if one is due. Returns the notice id, or None.
    `received_at` is the customer's message time, `answered_at` when the answer is decided (default: then)."""
    purpose = PURPOSE_BY_INTENT.get(intent)
    if purpose is None or not settings.responses_auto_replies or not answers_on(channel):
        return None
    if not await is_live(tx.conn, account_id):  # erased: nothing is ever sent to it
        return None
    at = answered_at or received_at
    since = at - timedelta(seconds=settings.responses_help_interval_s)
    if purpose == "help" and await _help_answered_since(tx, channel, address, since):
        return None
    notice = answer_notice(
        settings,
        purpose,
        account_id=account_id,
        reply_id=reply_id,
        address=address,
        received_at=received_at,
        channel=channel,
        answered_at=at,
    )
    if not await _claim(tx, notice, reply_id, at):
        return None
    tx.emit(notice, id=f"notice-due:{notice.notice_id}")
    return notice.notice_id
