"""The account timeline: messages both ways, status changes, manual contacts (a call, a letter, a visit:
who recorded it, and its note), cases, tasks, promises, notes, overrides and every audited action, merged in
time order. Messages and status changes are recorded as escalation
consumes them (`record_activity`); the rest comes from escalation's own tables."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from arrears_shared import paging
from arrears_shared.events import (
    AccountChanged,
    Event,
    MessageSent,
    PaymentFailed,
    PaymentRetryChanged,
    ReplyReceived,
    channel_label,
    notice_label,
)
from arrears_shared.money import format_amount, format_minor
from arrears_shared.vault.cipher import is_sealed, open_fields, open_value, seal_fields
from arrears_shared.vault.keys import vault
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..cases.models import SCHEMA


class TimelineItem(BaseModel):
    at: datetime
    kind: str
    summary: str
    ref: str
    data: dict[str, Any] = {}


# Personal strings kept sealed with the account's data key (arrears_shared.vault), opened for display:
# activity.data of a reply (`message_in`): the customer's words; of a message sent (`message_out.sent`): the
# text the customer was sent (`MessageSent.text`, bounded by the dispatcher)
_ACTIVITY_SEALED = ("text",)
# what a timeline item's data may hold sealed: a reply's text, a note's body / a closed case's note / a task's
# outcome / an override's reason in the audit entry that recorded it (`audit.note.add`, `audit.case.close`,
# `audit.task.complete`, `audit.override.*`)
_DATA_SEALED = ("text", "body", "note", "outcome", "reason")


def _activity(ev: Event, ce_id: str) -> dict[str, Any] | None:
    if isinstance(ev, MessageSent):
        return {
            "id": ce_id,
            "a": ev.account_id,
            "at": ev.sent_at,
            "k": f"message_out.{ev.status.value}",
            "s": (
                f"{ev.tier.value} step {ev.step} via {ev.channel}: {ev.status.value}"
                if ev.purpose == "dunning"
                else f"{notice_label(ev.purpose)} {ev.status.value} by {channel_label(ev.channel)}"
            )
            + (f" ({ev.reason})" if ev.reason else ""),
            "d": {
                "notice_id": ev.notice_id,
                "channel": ev.channel,
                "campaign_id": ev.campaign_id,
                **({"text": ev.text} if ev.text else {}),
            },
        }
    if isinstance(ev, ReplyReceived):
        return {
            "id": ce_id,
            "a": ev.account_id,
            "at": ev.received_at,
            "k": "message_in",
            "s": ev.summary(),
            "d": {
                "reply_id": ev.reply_id,
                "text": ev.text[:500],
                "intent": ev.intent.value,
                "suggested_intent": ev.suggested_intent.value if ev.suggested_intent else None,
                "needs_review": ev.needs_review,
                "possible_opt_out": ev.possible_opt_out,
                "reviewed_by": ev.reviewed_by,
            },
        }
    if isinstance(ev, AccountChanged):
        return {
            "id": ce_id,
            "a": ev.account_id,
            "at": ev.as_of,
            "k": f"account.{ev.change}",
            "s": f"{ev.change} from {ev.source}: balance {format_minor(ev.balance_minor, ev.currency)}, "
            f"status {ev.status.value}",
            "d": {
                "status": ev.status.value,
                "balance_minor": ev.balance_minor,
                "currency": ev.currency,
                "due_date": ev.due_date.isoformat(),
                "last_payment_minor": ev.last_payment_minor,
                "timezone": ev.timezone,  # the debtor's day for offers (offers.service.debtor_today)
            },
        }
    if isinstance(ev, PaymentRetryChanged):
        nxt = f", next retry {ev.next_retry_at:%Y-%m-%d %H:%M} UTC" if ev.next_retry_at else ""
        return {
            "id": ce_id,
            "a": ev.account_id,
            "at": ev.changed_at,
            "k": f"payment.retry.{ev.status}",
            "s": f"payment {ev.payment_id}: {ev.status.replace('_', ' ')} (retry {ev.retry_count} of "
            f"{ev.retries_max}, {ev.failures} failed attempts{nxt})"
            + (f": {ev.reason}" if ev.reason else ""),
            "d": {"provider": ev.provider, "payment_id": ev.payment_id, "at_risk": ev.at_risk},
        }
    if isinstance(ev, PaymentFailed):
        amount = f" {format_minor(ev.amount_minor, ev.currency)}" if ev.amount_minor and ev.currency else ""
        return {
            "id": ce_id,
            "a": ev.account_id,
            "at": ev.failed_at,
            "k": "payment.failed",
            "s": f"payment{amount} failed ({ev.provider}): {ev.failure_code or ev.failure_message or '?'}",
            "d": {
                "provider": ev.provider,
                "payment_id": ev.payment_id,
                "amount_minor": ev.amount_minor,
                "currency": ev.currency,
                "failure_code": ev.failure_code,
            },
        }
    return None


async def record_activity(conn: AsyncConnection, items: list[tuple[Event, str]]) -> None:
    """Store the batch's activity; a reply's or a sent message's text sealed with its account's data key (one
    key query)."""
    rows = [a for ev, ce_id in items if (a := _activity(ev, ce_id)) is not None]
    if not rows:
        return
    texts = [r for r in rows if r["d"].get("text")]
    if texts:
        keys = await vault().for_writing(conn, {r["a"] for r in texts})
        for r in texts:
            seal_fields(keys[r["a"]], r["a"], r["d"], _ACTIVITY_SEALED)
    for r in rows:
        r["d"] = json.dumps(r["d"])
    await conn.execute(
        text(
            f"""INSERT INTO {SCHEMA}.activity (id, account_id, at, kind, summary, data)
            VALUES (:id, :a, :at, :k, :s, CAST(:d AS jsonb)) ON CONFLICT (id) DO NOTHING"""
        ),
        rows,
    )


# a manual contact's note (contacts.service: sealed in activity.data) ends its line, opened like a note's body
_MANUAL_NOTE = "CASE WHEN kind = 'contact.manual' THEN COALESCE(data->>'note', '') ELSE '' END"
# `sealed`: the end of the summary, stored sealed (a note's body, a closed case's note, an audit entry's
# reason), opened in Python
_TIMELINE = f"""
SELECT at, kind, summary || CASE WHEN {_MANUAL_NOTE} <> '' THEN ': ' ELSE '' END, id AS ref, data,
       NULLIF({_MANUAL_NOTE}, '') AS sealed
  FROM {SCHEMA}.activity WHERE account_id = :a
UNION ALL
SELECT opened_at, 'case.opened', reason || ' (' || priority || '): ' || detail, case_id, '{{}}'::jsonb, NULL
  FROM {SCHEMA}.cases WHERE account_id = :a
UNION ALL
SELECT closed_at, 'case.closed', reason || ': ', case_id, '{{}}'::jsonb, close_note
  FROM {SCHEMA}.cases WHERE account_id = :a AND closed_at IS NOT NULL
UNION ALL
SELECT created_at, 'task.created', kind || ' for ' || team || COALESCE(' (' || assignee || ')', ''), task_id,
       jsonb_build_object('priority', priority, 'due_at', due_at), NULL
  FROM {SCHEMA}.tasks WHERE account_id = :a
UNION ALL
SELECT made_at, 'promise.made', 'promise to pay by ' || due_date, promise_id,
       jsonb_build_object('status', status, 'amount_minor', amount_minor, 'currency', currency), NULL
  FROM {SCHEMA}.promises WHERE account_id = :a
UNION ALL
SELECT settled_at, 'promise.' || status, 'promise ' || status, promise_id, '{{}}'::jsonb, NULL
  FROM {SCHEMA}.promises WHERE account_id = :a AND settled_at IS NOT NULL
UNION ALL
SELECT created_at, 'note', author || ': ', note_id::text, '{{}}'::jsonb, body
  FROM {SCHEMA}.notes WHERE account_id = :a
UNION ALL
SELECT at, 'audit.' || action, actor || ' (' || role || ')' || CASE WHEN reason <> '' THEN ': ' ELSE '' END,
       seq::text, COALESCE(after, '{{}}'::jsonb), NULLIF(reason, '')
  FROM {SCHEMA}.audit_log
  WHERE entity_id = :a OR after ->> 'account_id' = :a
"""
_KEY = (
    ("at", datetime),
    ("kind", str),
    ("ref", str),
)  # time order; kind and ref tell apart what happened at the same instant


async def timeline(
    conn: AsyncConnection, account_id: str, limit: int = 1000, cursor: str | None = None
) -> tuple[list[TimelineItem], str | None]:
    """One page of the account's timeline, oldest first, and the cursor of the next page."""
    after, params = paging.after_sql(cursor, _KEY, descending=False)
    rows = await conn.execute(
        text(
            f"""SELECT at, kind, summary, ref, data, sealed
            FROM ({_TIMELINE}) AS t(at, kind, summary, ref, data, sealed)
            WHERE {after} ORDER BY at, kind, ref LIMIT :n"""
        ),
        {"a": account_id, "n": limit + 1, **params},
    )
    found, nxt = paging.page(rows.all(), limit, lambda r: (r.at, r.kind, r.ref))
    items = [
        (r.at, r.kind, r.summary, r.ref, r.data if isinstance(r.data, dict) else {}, r.sealed) for r in found
    ]
    # every item is the account's: one key opens the page (`[erased]` once the account is erased)
    key = None
    if any(is_sealed(secret) or _holds_sealed(data) for *_, data, secret in items):
        key = (await vault().for_reading(conn, [account_id])).get(account_id)
    return [
        TimelineItem(
            at=at,
            kind=kind,
            summary=summary + _amount(kind, data) + (open_value(key, account_id, secret) or ""),
            ref=ref,
            data=open_fields(key, account_id, data, _DATA_SEALED),
        )
        for at, kind, summary, ref, data, secret in items
    ], nxt


def _amount(kind: str, data: dict[str, Any]) -> str:
    """A promise's amount in its currency's own decimals (JPY none, KWD three), formatted here, not in SQL."""
    if kind != "promise.made" or data.get("amount_minor") is None:
        return ""
    return ": " + format_amount(int(data["amount_minor"]), data.get("currency"))


def _holds_sealed(data: dict[str, Any]) -> bool:
    return any(is_sealed(data.get(k)) for k in _DATA_SEALED)
