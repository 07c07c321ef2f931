"""The topics scoring consumes -> its own history tables (no personal data: no name, address or text).

- `account-changed`: each state of the account (balance, due date, open or not, consent per channel); a
  balance lower than the previous state's is a payment of the difference. Other types on the topic (failed
  payments, retry state) are ignored.
- `message-sent`: dunning messages actually sent, with the debtor's local hour.
- `reply-received`: the intent (a person's later decision on the same reply replaces the classifier's) and
  any promised date.
- `overrides`: do-not-contact, disputes, promises taken by people, contacts made outside the platform.
- `link-clicked`: first opens of a notice's payment link.

Every insert is idempotent (primary keys; the inbox already drops redeliveries).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from zoneinfo import ZoneInfo

from arrears_shared.cloudevents import Envelope
from arrears_shared.events import (
    AccountChanged,
    DeliveryStatus,
    LinkClicked,
    MessageSent,
    OverrideRequested,
    ReplyReceived,
)
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import text

from .rows import OVERRIDE_ACTIONS


def local_hour(ev: MessageSent) -> int:
    try:
        tz = ZoneInfo(ev.timezone) if ev.timezone else UTC
    except Exception:  # an unknown zone name: count the hour in UTC rather than lose the message
        tz = UTC
    return ev.sent_at.astimezone(tz).hour


async def _account(tx: Transaction, a: AccountChanged) -> None:
    s = tx.schema
    points = a.contact_points()
    consent = {
        c: bool(points.get(c) and points[c].address and points[c].consent)
        for c in ("sms", "email", "whatsapp")
    }
    await tx.conn.execute(
        text(
            f"""INSERT INTO {s}.snapshots (account_id, at, balance_minor, currency, due_date, open, consent_sms,
                   consent_email, consent_whatsapp)
                VALUES (:a, :at, :bal, :cur, :due, :open, :sms, :email, :wa)
                ON CONFLICT (account_id, at) DO NOTHING"""
        ),
        {
            "a": a.account_id,
            "at": a.as_of,
            "bal": a.balance_minor,
            "cur": a.currency,
            "due": a.due_date,
            "open": a.stop_reason is None,
            "sms": consent["sms"],
            "email": consent["email"],
            "wa": consent["whatsapp"],
        },
    )
    if a.change == "removed":
        return
    before = (
        await tx.conn.execute(
            text(
                f"""SELECT balance_minor FROM {s}.snapshots WHERE account_id = :a AND at < :at
                    ORDER BY at DESC LIMIT 1"""
            ),
            {"a": a.account_id, "at": a.as_of},
        )
    ).scalar()
    if before is not None and a.balance_minor < before:
        await tx.conn.execute(
            text(
                f"""INSERT INTO {s}.payments (account_id, at, amount_minor) VALUES (:a, :at, :amt)
                    ON CONFLICT (account_id, at) DO NOTHING"""
            ),
            {"a": a.account_id, "at": a.as_of, "amt": before - a.balance_minor},
        )


async def handle_history(events: Sequence[Envelope], tx: Transaction) -> None:
    s = tx.schema
    for env in events:
        ev = env.data
        if isinstance(ev, AccountChanged):
            await _account(tx, ev)
        elif isinstance(ev, MessageSent):
            if ev.status != DeliveryStatus.SENT or ev.purpose != "dunning":
                continue
            await tx.conn.execute(
                text(
                    f"""INSERT INTO {s}.messages (notice_id, account_id, at, channel, local_hour, tier)
                        VALUES (:n, :a, :at, :ch, :h, :tier) ON CONFLICT (notice_id) DO NOTHING"""
                ),
                {
                    "n": ev.notice_id,
                    "a": ev.account_id,
                    "at": ev.sent_at,
                    "ch": ev.channel,
                    "h": local_hour(ev),
                    "tier": ev.tier.value,
                },
            )
        elif isinstance(ev, ReplyReceived):
            await tx.conn.execute(
                text(
                    f"""INSERT INTO {s}.replies (reply_id, account_id, at, channel, intent, promise_date)
                        VALUES (:r, :a, :at, :ch, :i, :pd)
                        ON CONFLICT (reply_id) DO UPDATE SET intent = EXCLUDED.intent,
                           promise_date = EXCLUDED.promise_date"""
                ),
                {
                    "r": ev.reply_id,
                    "a": ev.account_id,
                    "at": ev.received_at,
                    "ch": ev.channel,
                    "i": ev.intent.value,
                    "pd": ev.promise_date,
                },
            )
        elif isinstance(ev, OverrideRequested):
            if ev.action not in OVERRIDE_ACTIONS or ev.campaign_id:
                continue
            await tx.conn.execute(
                text(
                    f"""INSERT INTO {s}.overrides (override_id, account_id, at, action, promise_date)
                        VALUES (:o, :a, :at, :act, :pd) ON CONFLICT (override_id) DO NOTHING"""
                ),
                {
                    "o": ev.override_id,
                    "a": ev.account_id,
                    "at": ev.requested_at,
                    "act": ev.action,
                    "pd": ev.promise_date,
                },
            )
        elif isinstance(ev, LinkClicked):
            await tx.conn.execute(
                text(
                    f"""INSERT INTO {s}.clicks (notice_id, account_id, at) VALUES (:n, :a, :at)
                        ON CONFLICT (notice_id) DO NOTHING"""
                ),
                {"n": ev.notice_id, "a": ev.account_id, "at": ev.clicked_at},
            )
