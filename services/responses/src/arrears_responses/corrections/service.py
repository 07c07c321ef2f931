"""A person's correction of a reply's intent: kept, with the reply's text and what the classifier said, as
a labelled example for training the classifier (`intent_corrections`; the latest correction wins)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from arrears_shared.events import Intent
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


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
) -> tuple[Corrected, dict[str, Any]] | None:
    """Store the correction; returns it and the reply's previous labels, or None if no such reply."""
    reply = (
        await conn.execute(
            text(
                f"""SELECT r.reply_id, r.account_id, r.channel, r.text, r.intent, r.confidence,
                       c.intent AS corrected
                FROM {schema}.replies r LEFT JOIN {schema}.intent_corrections c USING (reply_id)
                WHERE r.reply_id = :id"""
            ),
            {"id": reply_id},
        )
    ).first()
    if reply is None:
        return None
    await conn.execute(
        text(
            f"""INSERT INTO {schema}.intent_corrections (reply_id, account_id, channel, text, predicted_intent,
                predicted_confidence, intent, corrected_by, corrected_at)
            VALUES (:id, :a, :ch, :t, :p, :pc, :i, :by, :at)
            ON CONFLICT (reply_id) DO UPDATE SET intent = EXCLUDED.intent, corrected_by = EXCLUDED.corrected_by,
                corrected_at = EXCLUDED.corrected_at"""
        ),
        {
            "id": reply.reply_id,
            "a": reply.account_id,
            "ch": reply.channel,
            "t": reply.text,
            "p": reply.intent,
            "pc": reply.confidence,
            "i": intent.value,
            "by": who,
            "at": now,
        },
    )
    before = {"predicted": reply.intent, "confidence": reply.confidence, "corrected": reply.corrected}
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
    )


async def labelled_examples(conn: AsyncConnection, schema: str, limit: int = 10_000) -> list[dict[str, Any]]:
    """Every correction as a labelled example (text, channel, intent), newest first."""
    rows = await conn.execute(
        text(
            f"""SELECT reply_id, channel, text, intent, predicted_intent, corrected_by, corrected_at
            FROM {schema}.intent_corrections ORDER BY corrected_at DESC LIMIT :n"""
        ),
        {"n": limit},
    )
    return [dict(r._mapping) for r in rows]
