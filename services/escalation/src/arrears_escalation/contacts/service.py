"""A manual contact = an `activity` row (the timeline, the KPIs) + an audit entry + a `record_contact` override
for the segmenter (and, with a promise, the existing promise path), all in the caller's one transaction.

Idempotent by contact id: the activity row's id is `contact:<account_id>:<contact_id>`; a second request for
the same id finds it and changes nothing (two at once: the second waits on the first's row lock, then sees it)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from arrears_shared.auth import Principal
from arrears_shared.stream.transaction import Transaction
from arrears_shared.vault.cipher import seal_value
from arrears_shared.vault.keys import vault
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..cases.models import SCHEMA
from ..overrides.service import request_override
from ..promises.service import add_promise
from .models import AccountFacts, ContactRecorded, RecordContact

KIND = "contact.manual"
CLOCK_SKEW = timedelta(minutes=2)  # a device's clock a little ahead of ours is not "the future"


class ContactRefused(ValueError):
    """The contact cannot be recorded as given (a person can fix it): unknown account, time out of range."""


async def account_facts(conn: AsyncConnection, account_ids: list[str]) -> dict[str, AccountFacts]:
    """When escalation first saw each account (its first sheet row) and its latest currency."""
    rows = await conn.execute(
        text(
            f"""SELECT account_id, min(at) AS first_at,
                   (array_agg(data->>'currency' ORDER BY at DESC))[1] AS currency,
                   (array_agg(data->>'due_date' ORDER BY at DESC))[1] AS due_date
            FROM {SCHEMA}.activity
            WHERE account_id = ANY(CAST(:a AS text[])) AND starts_with(kind, 'account.')
            GROUP BY account_id"""
        ),
        {"a": account_ids},
    )
    return {
        r.account_id: AccountFacts(first_seen_at=r.first_at, currency=r.currency, due_date=r.due_date)
        for r in rows
    }


def check_time(body: RecordContact, facts: AccountFacts | None, now: datetime) -> None:
    if facts is None:
        raise ContactRefused("unknown account: escalation has no sheet row for it")
    if body.contacted_at > now + CLOCK_SKEW:
        raise ContactRefused(f"contacted_at {body.contacted_at.isoformat()} is in the future")
    if body.contacted_at < facts.first_seen_at:
        raise ContactRefused(
            f"contacted_at {body.contacted_at.isoformat()} is before the account existed "
            f"(first seen {facts.first_seen_at.isoformat()})"
        )


def summary(body: RecordContact, who: Principal) -> str:
    """The timeline's line: how, which way, what came of it, and who recorded it (no note: it is sealed)."""
    return f"{body.channel} ({body.direction}): {body.outcome.replace('_', ' ')} — recorded by {who.name} ({who.role})"


async def record_contact(
    tx: Transaction, who: Principal, account_id: str, body: RecordContact, now: datetime
) -> ContactRecorded:
    """Record one manual contact (checked by the caller with `check_time`)."""
    contact_id = body.contact_id or body.derived_id(account_id)
    ref = f"contact:{account_id}:{contact_id}"  # a client's own ids need only be unique per account
    key = (await vault().for_writing(tx.conn, [account_id]))[account_id]
    data = {
        "contact_id": contact_id,
        "channel": body.channel,
        "direction": body.direction,
        "outcome": body.outcome,
        "note": seal_value(key, account_id, body.note) if body.note else "",
        "recorded_by": who.name,
        "role": who.role,
        "recorded_at": now.isoformat(),
        "promise_amount_minor": body.promise_amount_minor,
        "promise_date": body.promise_date.isoformat() if body.promise_date else None,
    }
    inserted = (
        await tx.conn.execute(
            text(
                f"""INSERT INTO {SCHEMA}.activity (id, account_id, at, kind, summary, data)
                VALUES (:id, :a, :at, :k, :s, CAST(:d AS jsonb)) ON CONFLICT (id) DO NOTHING RETURNING id"""
            ),
            {
                "id": ref,
                "a": account_id,
                "at": body.contacted_at,
                "k": KIND,
                "s": summary(body, who),
                "d": json.dumps(data),
            },
        )
    ).first()
    if inserted is None:
        return ContactRecorded(
            contact_id=contact_id, account_id=account_id, recorded=False, contacted_at=body.contacted_at
        )
    accepted = await request_override(
        tx,
        who,
        account_id=account_id,
        action="record_contact",
        now=now,
        reason=body.note,
        contact_id=contact_id,
        contact_channel=body.channel,
        contact_direction=body.direction,
        contact_outcome=body.outcome,
        contacted_at=body.contacted_at,
    )
    promise_override = None
    if body.promise_date is not None:
        promise = await request_override(
            tx,
            who,
            account_id=account_id,
            action="record_promise",
            now=now,
            reason=f"taken in manual contact {contact_id}",
            promise_date=body.promise_date,
            promise_amount_minor=body.promise_amount_minor,
        )
        promise_override = promise.override_id
        await add_promise(
            tx.conn,
            promise_id=ref,
            account_id=account_id,
            amount_minor=body.promise_amount_minor,
            due_date=body.promise_date,
            made_at=body.contacted_at,
            channel=body.channel,
            collector=who.name,
        )
    return ContactRecorded(
        contact_id=contact_id,
        account_id=account_id,
        recorded=True,
        override_id=accepted.override_id,
        promise_override_id=promise_override,
        audit_seq=accepted.audit_seq,
        contacted_at=body.contacted_at,
    )
