"""A person's correction of a reply's intent: kept, with the reply's text and what the classifier said, as
a labelled example for training the classifier (`intent_corrections`; the latest correction wins). The text
is sealed with the account's key like the reply's (in clear for an unmatched reply) and opened where read."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any

from arrears_shared import paging
from arrears_shared.events import Intent, ReplyReceived
from arrears_shared.stream.transaction import Transaction
from arrears_shared.vault.cipher import ERASED, open_value, seal_value
from arrears_shared.vault.keys import vault
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import metrics
from ..autoreplies.service import maybe_answer
from ..contacts.lookup import is_erased
from ..intents.classifier import promise_details
from ..intents.extract import PromiseDetails
from ..replies.debtor import debtor_of
from ..settings import ResponsesSettings


class Correction(BaseModel):
    intent: Intent


class Corrected(BaseModel):
    reply_id: str
    account_id: str | None
    predicted_intent: str
    intent: str
    corrected_by: str
    corrected_at: datetime


async def correct(
    conn: AsyncConnection, schema: str, reply_id: str, intent: Intent, who: str, now: datetime
) -> tuple[Corrected, dict[str, Any], Any] | None:
    """Store the correction; returns it, the reply's previous labels and the reply (its sender and text
    opened; `erased` when its account was), or None if no such reply. The text is kept sealed with the
    account's key (in clear for an unmatched reply: there is no account to seal it for)."""
    row = (
        await conn.execute(
            text(
                f"""SELECT r.reply_id, r.account_id, r.channel, r.text, r.intent, r.confidence, r.from_address,
                       r.provider_message_id, r.notice_id, r.received_at, r.possible_opt_out,
                       r.suggested_intent, c.intent AS corrected
                FROM {schema}.replies r LEFT JOIN {schema}.intent_corrections c USING (reply_id)
                WHERE r.reply_id = :id"""
            ),
            {"id": reply_id},
        )
    ).first()
    if row is None:
        return None
    reply = SimpleNamespace(**row._mapping, erased=False)
    stored_text = reply.text
    if reply.account_id is not None:
        acc = reply.account_id
        keys = await vault().for_reading(conn, [acc])
        reply.erased = is_erased(keys, acc)
        if reply.erased:  # even a reply stored in clear before sealing: nothing of it is used any more
            reply.text = reply.from_address = ERASED
        else:
            reply.text = open_value(keys.get(acc), acc, reply.text)
            reply.from_address = open_value(keys.get(acc), acc, reply.from_address)
        # an erased account gets a throw-away key: what is sealed for it is unreadable
        key = (await vault().for_writing(conn, [acc]))[acc]
        stored_text = seal_value(key, acc, reply.text)
    await conn.execute(
        text(
            f"""INSERT INTO {schema}.intent_corrections (reply_id, account_id, channel, text, predicted_intent,
                predicted_confidence, intent, corrected_by, corrected_at)
            VALUES (:id, :a, :ch, :t, :p, :pc, :i, :by, :at)
            ON CONFLICT (reply_id) DO UPDATE SET text = EXCLUDED.text, intent = EXCLUDED.intent,
                corrected_by = EXCLUDED.corrected_by, corrected_at = EXCLUDED.corrected_at"""
        ),
        {
            "id": reply.reply_id,
            "a": reply.account_id,
            "ch": reply.channel,
            "t": stored_text,
            "p": reply.intent,
            "pc": reply.confidence,
            "i": intent.value,
            "by": who,
            "at": now,
        },
    )
    await conn.execute(
        text(f"UPDATE {schema}.replies SET reviewed_by = :by, reviewed_at = :at WHERE reply_id = :id"),
        {"id": reply_id, "by": who, "at": now},
    )
    before = {
        "predicted": reply.intent,
        "suggested": reply.suggested_intent,
        "confidence": reply.confidence,
        "possible_opt_out": reply.possible_opt_out,
        "corrected": reply.corrected,
    }
    return (
        Corrected(
            reply_id=reply.reply_id,
            account_id=reply.account_id,
            predicted_intent=reply.intent,
            intent=intent.value,
            corrected_by=who,
            corrected_at=now,
        ),
        before,
        reply,
    )


def decision_event(reply: Any, intent: Intent, who: str, details: PromiseDetails | None) -> ReplyReceived:
    """A person's decision about a reply, published like a reply (same `reply_id`, `reviewed_by` set):
    the segmenter and escalation act on the corrected intent, and a fail-safe pause ends (or, for an
    opt-out, becomes the opt-out)."""
    promise: dict[str, Any] = {}
    if details is not None and intent is Intent.PROMISE_TO_PAY:
        promise = {
            "promise_amount_minor": details.amount_minor,
            "promise_currency": details.currency,
            "promise_date": details.date,
            "promise_plan_every": details.plan_every,
        }
    return ReplyReceived(
        account_id=reply.account_id,
        reply_id=reply.reply_id,
        channel=str(reply.channel),
        from_address=reply.from_address,
        text=reply.text[:5000],
        provider_message_id=reply.provider_message_id,
        in_reply_to_notice_id=reply.notice_id,
        received_at=reply.received_at,
        intent=intent,
        confidence=1.0,
        reviewed_by=who,
        **promise,
    )


async def labelled_examples(
    conn: AsyncConnection, schema: str, limit: int = 500, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of corrections as labelled examples (text opened, channel, intent), newest first, and the
    cursor of the next page."""
    after, params = paging.after_sql(cursor, (("corrected_at", datetime), ("reply_id", str)))
    rows = await conn.execute(
        text(
            f"""SELECT reply_id, account_id, channel, text, intent, predicted_intent, corrected_by, corrected_at
            FROM {schema}.intent_corrections WHERE {after}
            ORDER BY corrected_at DESC, reply_id DESC LIMIT :n"""
        ),
        {"n": limit + 1, **params},
    )
    found, nxt = paging.page(rows.all(), limit, lambda r: (r.corrected_at, r.reply_id))
    keys = await vault().for_reading(conn, {r.account_id for r in found if r.account_id is not None})
    examples = []
    for r in found:
        example = dict(r._mapping)
        acc = example.pop("account_id")
        if acc is not None:
            example["text"] = open_value(keys.get(acc), acc, example["text"])
        examples.append(example)
    return examples, nxt


async def publish_decision(
    tx: Transaction, settings: ResponsesSettings, reply: Any, intent: Intent, who: str, now: datetime
) -> None:
    """Emit the decision (one event per correction) and, for an opt-out a person confirmed on a channel that
    answers (autoreplies.answers_on), the one opt-out confirmation the customer is owed."""
    details = None
    if (
        intent is Intent.PROMISE_TO_PAY
    ):  # the person says it is a promise: read its terms whatever the model said
        debtor = await debtor_of(tx, reply.account_id)
        details = promise_details(
            reply.text,
            reply.received_at,
            channel=reply.channel,
            timezone=debtor.timezone if debtor else None,
            currency=debtor.currency if debtor else None,
        )
    metrics.DECISIONS.labels(intent.value).inc()
    tx.emit(
        decision_event(reply, intent, who, details),
        id=f"reply-received:{reply.reply_id}:decided:{now.isoformat()}",
    )
    if intent is Intent.OPT_OUT:  # on a channel that answers (maybe_answer decides)
        await maybe_answer(
            tx,
            settings,
            intent=intent,
            channel=reply.channel,
            account_id=reply.account_id,
            reply_id=reply.reply_id,
            address=reply.from_address,
            received_at=reply.received_at,
            answered_at=now,
        )
