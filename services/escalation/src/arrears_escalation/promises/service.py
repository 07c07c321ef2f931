"""Promise-to-pay tracking: recorded from a reply, from a person (escalation's own API), or from another
producer's `record_promise` override (the debtor's portal: a promise, an instalment plan, an accepted
settlement offer); kept when a payment arrives, broken after the due date.

A newer promise supersedes the pending one. A payment (account-changed with change=payment, or a balance
of zero) keeps every pending promise of the account when it covers the promised amount (or the promise
named no amount, or the balance is cleared); `on_time` = paid on or before the due date (punctuality)."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

from arrears_shared import paging
from arrears_shared.events import AccountChanged, OverrideRequested, ReplyReceived
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import metrics
from ..cases.models import SCHEMA


class PromiseView(BaseModel):
    promise_id: str
    account_id: str
    amount_minor: int | None
    due_date: date
    status: str
    made_at: datetime
    settled_at: datetime | None
    paid_minor: int | None
    on_time: bool | None
    channel: str | None
    currency: str | None = None
    plan_every: str | None = None  # an instalment plan: amount_minor every week / fortnight / month


PLAN_PERIOD = {"week": timedelta(days=7), "fortnight": timedelta(days=14), "month": timedelta(days=31)}


async def record_promise(conn: AsyncConnection, ev: ReplyReceived, collector: str | None = None) -> bool:
    """A promise found in a reply. An instalment offer without a start date is due within one period."""
    due = ev.promise_date
    if due is None and ev.promise_plan_every is not None:
        due = ev.received_at.date() + PLAN_PERIOD[ev.promise_plan_every]
    if due is None:
        return False
    return await add_promise(
        conn,
        promise_id=ev.reply_id,
        account_id=ev.account_id,
        amount_minor=ev.promise_amount_minor,
        due_date=due,
        made_at=ev.received_at,
        channel=ev.channel,
        collector=collector,
        currency=ev.promise_currency,
        plan_every=ev.promise_plan_every,
    )


PORTAL_ACTOR = "portal:"  # OverrideRequested.actor of the debtor's own actions in the portal


async def on_override(conn: AsyncConnection, ev: OverrideRequested) -> bool:
    """A `record_promise` override escalation did not make itself (escalation records its own as it makes
    them): tracked under `override:<override_id>`, so a replay changes nothing. The portal's promises carry
    channel `portal` and a line on the collector's timeline saying what the debtor did there."""
    if ev.action != "record_promise" or ev.promise_date is None:
        return False
    portal = ev.actor.startswith(PORTAL_ACTOR)
    added = await add_promise(
        conn,
        promise_id=f"override:{ev.override_id}",
        account_id=ev.account_id,
        amount_minor=ev.promise_amount_minor,
        due_date=ev.promise_date,
        made_at=ev.requested_at,
        channel="portal" if portal else None,
        collector=None if portal else ev.actor,
        plan_every=ev.promise_plan_every,
    )
    if added and portal and ev.settlement_offer_id is None:
        amount = f" {ev.promise_amount_minor / 100:,.2f}" if ev.promise_amount_minor is not None else ""
        if ev.promise_plan_every:
            count = f"{ev.plan_instalments} instalments" if ev.plan_instalments else "instalments"
            summary = (
                f"instalment plan chosen in the portal: {count} every {ev.promise_plan_every}, "
                f"first{amount} on {ev.promise_date}"
            )
        else:
            summary = f"promise to pay{amount} by {ev.promise_date} made in the portal"
        await conn.execute(
            text(
                f"""INSERT INTO {SCHEMA}.activity (id, account_id, at, kind, summary, data)
                VALUES (:id, :a, :at, :k, :s, CAST(:d AS jsonb)) ON CONFLICT (id) DO NOTHING"""
            ),
            {
                "id": f"portal:{ev.override_id}",
                "a": ev.account_id,
                "at": ev.requested_at,
                "k": "portal.plan" if ev.promise_plan_every else "portal.promise",
                "s": summary,
                "d": json.dumps({"override_id": ev.override_id, "actor": ev.actor}),
            },
        )
    return added


async def add_promise(
    conn: AsyncConnection,
    *,
    promise_id: str,
    account_id: str,
    amount_minor: int | None,
    due_date: date,
    made_at: datetime,
    channel: str | None,
    collector: str | None,
    currency: str | None = None,
    plan_every: str | None = None,
) -> bool:
    """Record a promise (from a reply, or taken by a person); it supersedes the pending one. A promise
    already recorded under this id (a replay, or a person's decision about the same reply) changes
    nothing: it must not supersede a newer promise and then fail to take its place."""
    known = (
        await conn.execute(text(f"SELECT 1 FROM {SCHEMA}.promises WHERE promise_id = :p"), {"p": promise_id})
    ).first()
    if known:
        return False
    await conn.execute(
        text(
            f"""UPDATE {SCHEMA}.promises SET status = 'superseded', settled_at = :at
            WHERE account_id = :a AND status = 'pending' AND promise_id <> :p"""
        ),
        {"a": account_id, "p": promise_id, "at": made_at},
    )
    row = (
        await conn.execute(
            text(
                f"""INSERT INTO {SCHEMA}.promises (promise_id, account_id, amount_minor, due_date, status,
                    made_at, channel, collector, currency, plan_every)
                VALUES (:p, :a, :amt, :d, 'pending', :at, :ch, :col, :cur, :plan)
                ON CONFLICT DO NOTHING RETURNING 1"""
            ),
            {
                "p": promise_id,
                "a": account_id,
                "amt": amount_minor,
                "d": due_date,
                "at": made_at,
                "ch": channel,
                "col": collector,
                "cur": currency,
                "plan": plan_every,
            },
        )
    ).first()
    if row:
        metrics.PROMISES.labels("made").inc()
    return row is not None


async def on_payment(conn: AsyncConnection, ev: AccountChanged) -> int:
    paid = ev.change == "payment" or ev.balance_minor <= 0
    if not paid:
        return 0
    rows = (
        await conn.execute(
            text(
                f"""UPDATE {SCHEMA}.promises SET status = 'kept', settled_at = :at, paid_minor = :paid,
                    on_time = (CAST(:day AS date) <= due_date)
                WHERE account_id = :a AND status = 'pending'
                  AND (amount_minor IS NULL OR :balance <= 0 OR COALESCE(:paid, 0) >= amount_minor)
                RETURNING promise_id"""
            ),
            {
                "a": ev.account_id,
                "at": ev.as_of,
                "day": (ev.last_payment_date or ev.as_of.date()),
                "paid": ev.last_payment_minor,
                "balance": ev.balance_minor,
            },
        )
    ).all()
    for _ in rows:
        metrics.PROMISES.labels("kept").inc()
    return len(rows)


async def due_broken(
    conn: AsyncConnection, today: date, grace_days: int, limit: int, now: datetime
) -> list[Any]:
    """Pending promises whose due date + grace has passed, locked and marked broken."""
    rows = (
        await conn.execute(
            text(
                f"""SELECT promise_id, account_id, amount_minor, due_date FROM {SCHEMA}.promises
                WHERE status = 'pending' AND due_date < :cutoff ORDER BY due_date LIMIT :n
                FOR UPDATE SKIP LOCKED"""
            ),
            {"cutoff": today - timedelta(days=grace_days), "n": limit},
        )
    ).all()
    for r in rows:
        await conn.execute(
            text(f"UPDATE {SCHEMA}.promises SET status = 'broken', settled_at = :at WHERE promise_id = :p"),
            {"p": r.promise_id, "at": now},
        )
        metrics.PROMISES.labels("broken").inc()
    return list(rows)


async def list_promises(
    conn: AsyncConnection, account_id: str | None = None, limit: int = 500, cursor: str | None = None
) -> list[PromiseView]:
    """One page of promises, newest first (`page_promises` also gives the next page's cursor)."""
    return (await page_promises(conn, account_id, limit, cursor))[0]


async def page_promises(
    conn: AsyncConnection, account_id: str | None = None, limit: int = 50, cursor: str | None = None
) -> tuple[list[PromiseView], str | None]:
    after, params = paging.after_sql(cursor, (("made_at", datetime), ("promise_id", str)))
    where = f"{after} AND account_id = :a" if account_id else after
    rows = await conn.execute(
        text(
            f"SELECT * FROM {SCHEMA}.promises WHERE {where} ORDER BY made_at DESC, promise_id DESC LIMIT :n"
        ),
        {"n": limit + 1, "a": account_id, **params},
    )
    found, nxt = paging.page(rows.all(), limit, lambda r: (r.made_at, r.promise_id))
    return [PromiseView.model_validate(r._asdict()) for r in found], nxt
