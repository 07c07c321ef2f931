"""Collection metrics, computed for one UTC day and snapshotted, so trends are a plain query.

For day D (and the 7-day window W = D-6 .. D for the rates that need time to happen):
- `collection_rate`: paid on D / (paid on D + balance left); aging bucket = days past due at the payment
  (current, 1-30, 31-60, 61-90, 91-120, 120+);
- `days_in_arrears_coverage`: accounts in arrears at the end of D (latest known state: balance left, due
  date passed, not paid/closed/removed) that had an automatic message or a person's contact (completed call
  task, or a manual contact recorded by hand or imported: activity `contact.manual`, at the time it happened)
  in the 30 days up to D / accounts in arrears; aging bucket = days past due on D;
- `promise_fulfilment`: promises kept / promises settled (kept + broken) on D; `promise_punctuality`:
  kept on or before the due date / kept;
- `automated_notification_rate`: automatic messages sent / (those + person-made contacts: completed call
  tasks and manual contacts, `contact.manual`, whatever their outcome: an attempt is a contact made) on D;
- `response_rate`: accounts messaged in W that replied in W / accounts messaged in W;
- `recovery_rate`: paid in W / (paid in W + balance left of the accounts that paid) — by campaign or
  collector: of the payments attributed to it, plus the balance left of the accounts that made them;
- `tasks_completed`: tasks completed on D.
Scopes: `overall` (scope_id `all`; not for `tasks_completed`), `aging_bucket` (`collection_rate` and
`days_in_arrears_coverage`), and `campaign` and `collector` for every metric. Each campaign / collector
breakdown attributes its event (a payment; a message sent; a promise's settlement; a completed task or call;
for coverage, the end of D) the same way:
- campaign = the campaign of the account's latest automatic message (`message_out.sent`) at or before it;
- collector = the assignee of the account's latest task created at or before it; for a promise, the person
  who recorded it (`promises.collector`) first; for a completed task, its own assignee; for a manual
  contact, the person who recorded it.
An event with no campaign or no collector counts overall only (never under a null scope_id).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from arrears_shared import paging
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..cases.models import SCHEMA

S = SCHEMA
COVERAGE_DAYS = 30  # an account in arrears is covered when contacted within this many days
CONTACT_TASKS = ("call_back", "call_customer", "follow_up_promise", "hardship_review")

_BUCKET = """CASE WHEN dpd <= 0 THEN 'current' WHEN dpd <= 30 THEN '1-30' WHEN dpd <= 60 THEN '31-60'
  WHEN dpd <= 90 THEN '61-90' WHEN dpd <= 120 THEN '91-120' ELSE '120+' END"""


def _campaign(account: str, when: str) -> str:
    """The campaign of `account`'s latest automatic message sent `when` (e.g. "<= p.at"): one probe of the
    activity_account (account_id, at) index, newest first."""
    return f"""(SELECT m.data->>'campaign_id' FROM {S}.activity m
             WHERE m.account_id = {account} AND m.kind = 'message_out.sent' AND m.at {when}
             ORDER BY m.at DESC LIMIT 1)"""


def _collector(account: str, when: str) -> str:
    """The assignee of `account`'s latest task created `when`: one probe of tasks_account (account_id,
    created_at), newest first."""
    return f"""(SELECT t.assignee FROM {S}.tasks t
             WHERE t.account_id = {account} AND t.assignee IS NOT NULL AND t.created_at {when}
             ORDER BY t.created_at DESC LIMIT 1)"""


QUERIES: dict[str, str] = {
    "collection_rate": f"""
        WITH p AS (
          SELECT account_id, at, COALESCE((data->>'last_payment_minor')::bigint, 0) AS paid,
                 GREATEST((data->>'balance_minor')::bigint, 0) AS left_,
                 (at::date - (data->>'due_date')::date) AS dpd
          FROM {S}.activity WHERE kind = 'account.payment' AND at >= :d0 AND at < :d1),
        pa AS (
          SELECT p.*, {_campaign("p.account_id", "<= p.at")} AS campaign,
                 {_collector("p.account_id", "<= p.at")} AS collector
          FROM p)
        SELECT 'aging_bucket' AS scope, {_BUCKET} AS scope_id, sum(paid) AS num, sum(paid + left_) AS den
        FROM p GROUP BY 2
        UNION ALL SELECT 'overall', 'all', sum(paid), sum(paid + left_) FROM p
        UNION ALL SELECT 'campaign', campaign, sum(paid), sum(paid + left_) FROM pa
          WHERE campaign <> '' GROUP BY campaign
        UNION ALL SELECT 'collector', collector, sum(paid), sum(paid + left_) FROM pa
          WHERE collector IS NOT NULL GROUP BY collector""",
    "days_in_arrears_coverage": f"""
        WITH state AS (
          SELECT DISTINCT ON (account_id) account_id, kind, data FROM {S}.activity
          WHERE starts_with(kind, 'account.') AND at < :d1 ORDER BY account_id, at DESC),
        arrears AS (
          SELECT account_id, (CAST(:d0 AS date) - (data->>'due_date')::date) AS dpd FROM state
          WHERE kind <> 'account.removed' AND COALESCE((data->>'balance_minor')::bigint, 0) > 0
            AND COALESCE(data->>'status', 'open') NOT IN ('paid', 'closed')
            AND (data->>'due_date')::date < CAST(:d0 AS date)),
        contacted AS (
          SELECT account_id FROM {S}.activity WHERE kind = 'message_out.sent' AND at >= :c0 AND at < :d1
          UNION
          SELECT account_id FROM {S}.tasks WHERE status = 'done' AND kind = ANY(:contact)
            AND completed_at >= :c0 AND completed_at < :d1
          UNION
          SELECT account_id FROM {S}.activity WHERE kind = 'contact.manual' AND at >= :c0 AND at < :d1),
        a AS (
          SELECT r.dpd, c.account_id IS NOT NULL AS covered,
                 {_campaign("r.account_id", "< :d1")} AS campaign,
                 {_collector("r.account_id", "< :d1")} AS collector
          FROM arrears r LEFT JOIN contacted c USING (account_id))
        SELECT 'overall' AS scope, 'all' AS scope_id, count(*) FILTER (WHERE covered) AS num, count(*) AS den FROM a
        UNION ALL
        SELECT 'aging_bucket', {_BUCKET}, count(*) FILTER (WHERE covered), count(*) FROM a GROUP BY 2
        UNION ALL
        SELECT 'campaign', campaign, count(*) FILTER (WHERE covered), count(*) FROM a
        WHERE campaign <> '' GROUP BY campaign
        UNION ALL
        SELECT 'collector', collector, count(*) FILTER (WHERE covered), count(*) FROM a
        WHERE collector IS NOT NULL GROUP BY collector""",
    "promise_fulfilment": f"""
        WITH p AS (
          SELECT p.status, {_campaign("p.account_id", "<= p.settled_at")} AS campaign,
                 COALESCE(p.collector, {_collector("p.account_id", "<= p.settled_at")}) AS collector
          FROM {S}.promises p
          WHERE p.status IN ('kept', 'broken') AND p.settled_at >= :d0 AND p.settled_at < :d1)
        SELECT 'overall' AS scope, 'all' AS scope_id, count(*) FILTER (WHERE status = 'kept') AS num,
               count(*) AS den FROM p
        UNION ALL
        SELECT 'campaign', campaign, count(*) FILTER (WHERE status = 'kept'), count(*) FROM p
        WHERE campaign <> '' GROUP BY campaign
        UNION ALL
        SELECT 'collector', collector, count(*) FILTER (WHERE status = 'kept'), count(*) FROM p
        WHERE collector IS NOT NULL GROUP BY collector""",
    "promise_punctuality": f"""
        WITH p AS (
          SELECT p.on_time, {_campaign("p.account_id", "<= p.settled_at")} AS campaign,
                 COALESCE(p.collector, {_collector("p.account_id", "<= p.settled_at")}) AS collector
          FROM {S}.promises p WHERE p.status = 'kept' AND p.settled_at >= :d0 AND p.settled_at < :d1)
        SELECT 'overall' AS scope, 'all' AS scope_id, count(*) FILTER (WHERE on_time) AS num, count(*) AS den
        FROM p
        UNION ALL
        SELECT 'campaign', campaign, count(*) FILTER (WHERE on_time), count(*) FROM p
        WHERE campaign <> '' GROUP BY campaign
        UNION ALL
        SELECT 'collector', collector, count(*) FILTER (WHERE on_time), count(*) FROM p
        WHERE collector IS NOT NULL GROUP BY collector""",
    "automated_notification_rate": f"""
        WITH contact AS (
          SELECT true AS auto, COALESCE(m.data->>'campaign_id', '') AS campaign,
                 {_collector("m.account_id", "<= m.at")} AS collector
          FROM {S}.activity m WHERE m.kind = 'message_out.sent' AND m.at >= :d0 AND m.at < :d1
          UNION ALL
          SELECT false, {_campaign("k.account_id", "<= k.completed_at")}, k.assignee
          FROM {S}.tasks k WHERE k.status = 'done' AND k.kind = ANY(:contact)
            AND k.completed_at >= :d0 AND k.completed_at < :d1
          UNION ALL
          SELECT false, {_campaign("c.account_id", "<= c.at")}, c.data->>'recorded_by'
          FROM {S}.activity c WHERE c.kind = 'contact.manual' AND c.at >= :d0 AND c.at < :d1)
        SELECT 'overall' AS scope, 'all' AS scope_id, count(*) FILTER (WHERE auto) AS num, count(*) AS den
        FROM contact
        UNION ALL
        SELECT 'campaign', campaign, count(*) FILTER (WHERE auto), count(*) FROM contact
        WHERE campaign <> '' GROUP BY campaign
        UNION ALL
        SELECT 'collector', collector, count(*) FILTER (WHERE auto), count(*) FROM contact
        WHERE collector IS NOT NULL GROUP BY collector""",
    "response_rate": f"""
        WITH sent AS (
          SELECT m.account_id, COALESCE(m.data->>'campaign_id', '') AS campaign,
                 {_collector("m.account_id", "<= m.at")} AS collector
          FROM {S}.activity m WHERE m.kind = 'message_out.sent' AND m.at >= :w0 AND m.at < :d1),
        replied AS (
          SELECT DISTINCT account_id FROM {S}.activity WHERE kind = 'message_in' AND at >= :w0 AND at < :d1),
        s AS (SELECT sent.*, r.account_id IS NOT NULL AS answered FROM sent LEFT JOIN replied r USING (account_id))
        SELECT 'overall' AS scope, 'all' AS scope_id,
               count(DISTINCT account_id) FILTER (WHERE answered) AS num, count(DISTINCT account_id) AS den
        FROM s
        UNION ALL
        SELECT 'campaign', campaign, count(DISTINCT account_id) FILTER (WHERE answered),
               count(DISTINCT account_id)
        FROM s WHERE campaign <> '' GROUP BY campaign
        UNION ALL
        SELECT 'collector', collector, count(DISTINCT account_id) FILTER (WHERE answered),
               count(DISTINCT account_id)
        FROM s WHERE collector IS NOT NULL GROUP BY collector""",
    "recovery_rate": f"""
        WITH p AS (
          SELECT account_id, COALESCE((data->>'last_payment_minor')::bigint, 0) AS paid, at,
                 GREATEST((data->>'balance_minor')::bigint, 0) AS left_
          FROM {S}.activity WHERE kind = 'account.payment' AND at >= :w0 AND at < :d1),
        last AS (SELECT DISTINCT ON (account_id) account_id, left_ FROM p ORDER BY account_id, at DESC),
        pa AS (
          SELECT p.account_id, p.paid, {_campaign("p.account_id", "<= p.at")} AS campaign,
                 {_collector("p.account_id", "<= p.at")} AS collector
          FROM p),
        by_account AS (  -- paid per (scope, account): the account's balance left then counts once per scope
          SELECT 'campaign' AS scope, campaign AS scope_id, account_id, sum(paid) AS paid FROM pa
          WHERE campaign <> '' GROUP BY campaign, account_id
          UNION ALL
          SELECT 'collector', collector, account_id, sum(paid) FROM pa
          WHERE collector IS NOT NULL GROUP BY collector, account_id)
        SELECT 'overall' AS scope, 'all' AS scope_id, (SELECT sum(paid) FROM p) AS num,
               (SELECT sum(paid) FROM p) + (SELECT sum(left_) FROM last) AS den
        UNION ALL
        SELECT scope, scope_id, sum(b.paid), sum(b.paid + l.left_)
        FROM by_account b JOIN last l USING (account_id) GROUP BY scope, scope_id""",
    "tasks_completed": f"""
        WITH done AS (
          SELECT k.assignee, {_campaign("k.account_id", "<= k.completed_at")} AS campaign
          FROM {S}.tasks k WHERE k.status = 'done' AND k.completed_at >= :d0 AND k.completed_at < :d1)
        SELECT 'collector' AS scope, assignee AS scope_id, count(*) AS num, NULL::bigint AS den
        FROM done WHERE assignee IS NOT NULL GROUP BY assignee
        UNION ALL
        SELECT 'campaign', campaign, count(*), NULL FROM done WHERE campaign <> '' GROUP BY campaign""",
}


async def compute(conn: AsyncConnection, day: date) -> list[dict[str, Any]]:
    params = {
        "d0": day,
        "d1": day + timedelta(days=1),
        "w0": day - timedelta(days=6),
        "c0": day - timedelta(days=COVERAGE_DAYS - 1),
        "contact": list(CONTACT_TASKS),
    }
    out: list[dict[str, Any]] = []
    for metric, sql in QUERIES.items():
        for r in (await conn.execute(text(sql), params)).all():
            num = float(r.num) if r.num is not None else None
            den = float(r.den) if r.den is not None else None
            value = num if den is None else (num / den if den and num is not None else None)
            out.append(
                {
                    "day": day,
                    "scope": r.scope,
                    "scope_id": r.scope_id,
                    "metric": metric,
                    "value": value,
                    "num": num,
                    "den": den,
                }
            )
    return out


async def snapshot(conn: AsyncConnection, day: date) -> int:
    """Store day's metrics once (a second snapshot of the same day changes nothing). Returns rows written."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": 0x4D455452})  # one writer at a time
    done = (
        await conn.execute(text(f"SELECT 1 FROM {S}.metric_snapshots WHERE day = :d LIMIT 1"), {"d": day})
    ).first()
    rows = [] if done else await compute(conn, day)
    if not rows:
        return 0
    await conn.execute(
        text(
            f"""INSERT INTO {S}.metric_snapshots (day, scope, scope_id, metric, value, numerator, denominator)
            VALUES (:day, :scope, :scope_id, :metric, :value, :num, :den) ON CONFLICT DO NOTHING"""
        ),
        rows,
    )
    return len(rows)


async def read(
    conn: AsyncConnection, start: date, end: date, scope: str | None = None, limit: int = 10_000
) -> list[dict[str, Any]]:
    """The first `limit` snapshot rows between two days, oldest first (`read_page` pages through all)."""
    return (await read_page(conn, start, end, scope, limit))[0]


async def read_page(
    conn: AsyncConnection,
    start: date,
    end: date,
    scope: str | None = None,
    limit: int = 2000,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of snapshot rows between two days (inclusive), oldest first, and the next page's cursor."""
    key = (("day", date), ("metric", str), ("scope", str), ("scope_id", str))
    after, params = paging.after_sql(cursor, key, descending=False)
    q = f"""SELECT day, scope, scope_id, metric, value, numerator, denominator FROM {S}.metric_snapshots
            WHERE day BETWEEN :a AND :b AND {after}"""
    params |= {"a": start, "b": end, "n": limit + 1}
    if scope:
        q += " AND scope = :s"
        params["s"] = scope
    rows = (await conn.execute(text(q + " ORDER BY day, metric, scope, scope_id LIMIT :n"), params)).all()
    found, nxt = paging.page(rows, limit, lambda r: (r.day, r.metric, r.scope, r.scope_id))
    return [dict(r._mapping) for r in found], nxt


_CAMPAIGN_COLLECTED = f"""
    WITH p AS (
      SELECT account_id, at, COALESCE((data->>'last_payment_minor')::bigint, 0) AS paid,
             GREATEST((data->>'balance_minor')::bigint, 0) AS left_, COALESCE(data->>'currency', '') AS currency
      FROM {S}.activity WHERE kind = 'account.payment' AND at >= :s AND at < :e),
    pa AS (SELECT p.*, {_campaign("p.account_id", "<= p.at")} AS campaign FROM p),
    last AS (  -- the balance the paying account still owes after its latest attributed payment
      SELECT DISTINCT ON (campaign, account_id) campaign, currency, left_ FROM pa WHERE campaign <> ''
      ORDER BY campaign, account_id, at DESC),
    paid AS (
      SELECT campaign, currency, sum(paid) AS paid, count(*) AS payments, count(DISTINCT account_id) AS accounts
      FROM pa WHERE campaign <> '' GROUP BY campaign, currency),
    owed AS (SELECT campaign, currency, sum(left_) AS left_ FROM last GROUP BY campaign, currency)
    SELECT paid.*, COALESCE(owed.left_, 0) AS left_ FROM paid LEFT JOIN owed USING (campaign, currency)
    ORDER BY campaign, currency"""


async def campaign_collected(conn: AsyncConnection, start: date, end: date) -> list[dict[str, Any]]:
    """Per campaign and currency, what was collected from start to end (inclusive, UTC days): the payments
    attributed to the campaign as `collection_rate` attributes them (the campaign of the account's latest
    automatic message at or before the payment), how many, from how many accounts, and what those accounts
    still owe. Live (today included), not from the snapshots, so a campaign's progress is current."""
    rows = await conn.execute(text(_CAMPAIGN_COLLECTED), {"s": start, "e": end + timedelta(days=1)})
    out = []
    for r in rows:
        paid, owed = int(r.paid or 0), int(r.left_ or 0)
        out.append(
            {
                "campaign_id": r.campaign,
                "currency": r.currency or None,
                "collected_minor": paid,
                "owed_minor": owed,
                "payments": int(r.payments),
                "accounts": int(r.accounts),
                "collection_rate": paid / (paid + owed) if paid + owed else None,
            }
        )
    return out
