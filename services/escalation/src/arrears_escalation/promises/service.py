"""Promise-to-pay tracking: recorded from a reply, from a person (escalation's own API), or from another
producer's `record_promise` override (the debtor's portal: a promise, an instalment plan, an accepted
settlement offer); kept when a payment arrives, broken after the due date.

A newer promise supersedes the pending one. Payments (account-changed with change=payment, or a balance
of zero) add up on every pending promise of the account, each payment once (`paid_through`: the `as_of` of
the last one counted, so a replay counts nothing twice); a promise is kept when they cover the promised
amount (or the promise named no amount, or the balance is cleared); `on_time` = paid on or before the due
date (punctuality).

An instalment plan is followed instalment by instalment: the promise is instalment 1; once an instalment is
kept, the promise rolls to the next one (`<first id>#<n>`, the same amount, its day by the plan's cadence,
what was paid beyond the instalment carried over) until the last; a missed one is broken like any promise
(date + grace: the `broken_promise` rule's case and `resume_dunning`). The portal splits a balance into
instalments at most one minor unit apart, the first the larger: a later instalment is kept one unit short.

A kept settlement (a promise accepting a settlement offer) with a balance left opens the business's task to
write the remainder off (offers.service.on_settlement_paid), once."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

from arrears_shared import paging
from arrears_shared.events import AccountChanged, OverrideRequested, ReplyReceived
from arrears_shared.instalments import instalment_day
from arrears_shared.money import format_amount
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import metrics
from ..cases.models import SCHEMA
from ..deps import Deps
from ..offers.service import on_settlement_paid


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
    plan_instalments: int | None = None  # an instalment plan: how many instalments
    instalment: int | None = None  # an instalment plan: which one this promise is (1: the first)
    settlement_offer_id: str | None = None  # the promise accepts this settlement offer


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
        plan_instalments=ev.plan_instalments if ev.promise_plan_every else None,
        instalment=1 if ev.promise_plan_every and ev.plan_instalments else None,
        settlement_offer_id=ev.settlement_offer_id,
    )
    if added and portal and ev.settlement_offer_id is None:
        amount = ""
        if ev.promise_amount_minor is not None:
            currency = (
                await conn.execute(
                    text(f"SELECT currency FROM {SCHEMA}.promises WHERE promise_id = :p"),
                    {"p": f"override:{ev.override_id}"},
                )
            ).scalar()
            amount = " " + format_amount(ev.promise_amount_minor, currency)
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
    plan_instalments: int | None = None,
    instalment: int | None = None,
    settlement_offer_id: str | None = None,
    paid_minor: int | None = None,
    paid_through: datetime | None = None,
) -> bool:
    """Record a promise (from a reply, or taken by a person); it supersedes the pending one. Without a
    `currency` (a person's or the portal's promise is in the account's currency) the account's latest known
    currency is kept with it, so its amount reads right in JPY or KWD too. A promise
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
                    made_at, channel, collector, currency, plan_every, plan_instalments, instalment,
                    settlement_offer_id, paid_minor, paid_through)
                VALUES (:p, :a, :amt, :d, 'pending', :at, :ch, :col,
                        COALESCE(CAST(:cur AS text), (
                            SELECT data->>'currency' FROM {SCHEMA}.activity
                            WHERE account_id = :a AND starts_with(kind, 'account.') AND data ? 'currency'
                            ORDER BY at DESC LIMIT 1)),
                        :plan, :n, :i, :so, :paid, :thru)
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
                "n": plan_instalments,
                "i": instalment,
                "so": settlement_offer_id,
                "paid": paid_minor,
                "thru": paid_through,
            },
        )
    ).first()
    if row:
        metrics.PROMISES.labels("made").inc()
    return row is not None


async def on_payment(
    conn: AsyncConnection, ev: AccountChanged, deps: Deps | None = None, now: datetime | None = None
) -> int:
    """Count a payment toward the account's pending promises and keep those it covers; a kept instalment
    rolls the plan on, a kept settlement asks for the write-off (with `deps`). Returns how many were kept."""
    paid = ev.change == "payment" or ev.balance_minor <= 0
    if not paid:
        return 0
    at, day = ev.as_of, (ev.last_payment_date or ev.as_of.date())
    await conn.execute(
        text(
            f"""UPDATE {SCHEMA}.promises SET paid_minor = COALESCE(paid_minor, 0) + :paid, paid_through = :at
            WHERE account_id = :a AND status = 'pending' AND (paid_through IS NULL OR paid_through < :at)"""
        ),
        {"a": ev.account_id, "at": at, "paid": ev.last_payment_minor or 0},
    )
    kept = await _keep(conn, ev.account_id, "", ev.balance_minor, at, day)
    total = 0
    while kept:
        total += len(kept)
        rolled = []
        for row in kept:
            if row.settlement_offer_id is not None and ev.balance_minor > 0 and deps is not None:
                await on_settlement_paid(conn, deps, row, ev.balance_minor, ev.currency, now or at)
            nxt = await _roll(conn, row, ev.balance_minor, at)
            if nxt is not None:
                rolled.append(nxt)
        # what was paid beyond an instalment may already cover the next one
        kept = [r for p in rolled for r in await _keep(conn, ev.account_id, p, ev.balance_minor, at, day)]
    return total


async def _keep(
    conn: AsyncConnection, account_id: str, promise_id: str, balance: int, at: datetime, day: date
) -> list[Any]:
    """Mark kept the account's pending promises (or the one named) that what was paid covers."""
    rows = (
        await conn.execute(
            text(
                f"""UPDATE {SCHEMA}.promises SET status = 'kept', settled_at = :at,
                    on_time = (CAST(:day AS date) <= due_date)
                WHERE account_id = :a AND status = 'pending' AND (:p = '' OR promise_id = :p)
                  AND (amount_minor IS NULL OR :balance <= 0
                       OR COALESCE(paid_minor, 0) >= amount_minor - (CASE WHEN instalment > 1 THEN 1 ELSE 0 END))
                RETURNING *"""
            ),
            {"a": account_id, "p": promise_id, "at": at, "day": day, "balance": balance},
        )
    ).all()
    for _ in rows:
        metrics.PROMISES.labels("kept").inc()
    return list(rows)


async def _roll(conn: AsyncConnection, row: Any, balance: int, at: datetime) -> str | None:
    """After a kept instalment, the plan's next one as the pending promise (its id), if any is left."""
    n, count = row.instalment, row.plan_instalments
    if n is None or count is None or row.plan_every is None or n >= count or balance <= 0:
        return None
    base = row.promise_id.split("#", 1)[0]
    first = (
        await conn.execute(text(f"SELECT due_date FROM {SCHEMA}.promises WHERE promise_id = :p"), {"p": base})
    ).scalar_one_or_none() or row.due_date
    carried = max(0, (row.paid_minor or 0) - (row.amount_minor or 0))
    promise_id = f"{base}#{n + 1}"
    await add_promise(
        conn,
        promise_id=promise_id,
        account_id=row.account_id,
        amount_minor=row.amount_minor,
        due_date=instalment_day(first, row.plan_every, n),
        made_at=at,
        channel=row.channel,
        collector=row.collector,
        currency=row.currency,
        plan_every=row.plan_every,
        plan_instalments=count,
        instalment=n + 1,
        paid_minor=carried,
        paid_through=at,  # the payment that kept instalment n is not counted again
    )
    return promise_id


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
