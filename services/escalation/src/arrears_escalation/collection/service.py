"""Collection metrics (seed 004), computed for one UTC day and snapshotted, so trends are a plain query.

For day D (and the 7-day window W = D-6 .. D for the rates that need time to happen):
- `collection_rate` by aging bucket: paid on D / (paid on D + balance left), bucket = days past due at
  the payment (current, 1-30, 31-60, 61-90, 91-120, 120+); by campaign (the campaign of the last automatic
  message sent to the account before the payment) and by collector (the assignee of the account's latest
  task created before the payment) too;
- `days_in_arrears_coverage`: accounts in arrears at the end of D (latest known state: balance left, due
  date passed, not paid/closed/removed) that had an automatic message or a person's contact (completed call
  task) in the 30 days up to D / accounts in arrears — overall and by aging bucket (days past due on D);
- `promise_fulfilment`: promises kept / promises settled (kept + broken) on D; `promise_punctuality`:
  kept on or before the due date / kept;
- `automated_notification_rate`: automatic messages sent / (those + person-made contacts: completed call
  tasks) on D — by campaign too;
- `response_rate`: accounts messaged in W that replied in W / accounts messaged in W — by campaign too;
- `recovery_rate`: paid in W / (paid in W + balance left of the accounts that paid);
- `tasks_completed` by collector (assignee) on D, and `promise_fulfilment` by collector (the assignee of
  the promise follow-up task, when there was one).
Scopes: `overall` (scope_id `all`), `campaign`, `aging_bucket`, `collector`.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..cases.models import SCHEMA

S = SCHEMA
COVERAGE_DAYS = 30  # an account in arrears is covered when contacted within this many days
CONTACT_TASKS = ("call_back", "call_customer", "follow_up_promise", "hardship_review")

_BUCKET = """CASE WHEN dpd <= 0 THEN 'current' WHEN dpd <= 30 THEN '1-30' WHEN dpd <= 60 THEN '31-60'
  WHEN dpd <= 90 THEN '61-90' WHEN dpd <= 120 THEN '91-120' ELSE '120+' END"""

QUERIES: dict[str, str] = {
    "collection_rate": f"""
        WITH p AS (
          SELECT account_id, at, COALESCE((data->>'last_payment_minor')::bigint, 0) AS paid,
                 GREATEST((data->>'balance_minor')::bigint, 0) AS left_,
                 (at::date - (data->>'due_date')::date) AS dpd
          FROM {S}.activity WHERE kind = 'account.payment' AND at >= :d0 AND at < :d1),
        pa AS (
          SELECT p.*,
            (SELECT m.data->>'campaign_id' FROM {S}.activity m
             WHERE m.account_id = p.account_id AND m.kind = 'message_out.sent' AND m.at <= p.at
             ORDER BY m.at DESC LIMIT 1) AS campaign,
            (SELECT t.assignee FROM {S}.tasks t
             WHERE t.account_id = p.account_id AND t.assignee IS NOT NULL AND t.created_at <= p.at
             ORDER BY t.created_at DESC LIMIT 1) AS collector
          FROM p)
        SELECT 'aging_bucket' AS scope, {_BUCKET} AS scope_id, sum(paid) AS num, sum(paid + left_) AS den
        FROM p GROUP BY 2
        UNION ALL SELECT 'overall', 'all', sum(paid), sum(paid + left_) FROM p
        UNION ALL SELECT 'campaign', campaign, sum(paid), sum(paid + left_) FROM pa
          WHERE campaign IS NOT NULL AND campaign <> '' GROUP BY campaign
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
            AND completed_at >= :c0 AND completed_at < :d1),
        a AS (SELECT a.dpd, c.account_id IS NOT NULL AS covered FROM arrears a LEFT JOIN contacted c USING (account_id))
        SELECT 'overall' AS scope, 'all' AS scope_id, count(*) FILTER (WHERE covered) AS num, count(*) AS den FROM a
        UNION ALL
        SELECT 'aging_bucket', {_BUCKET}, count(*) FILTER (WHERE covered), count(*) FROM a GROUP BY 2""",
    "promise_fulfilment": f"""
        SELECT 'overall' AS scope, 'all' AS scope_id, count(*) FILTER (WHERE status = 'kept') AS num,
               count(*) AS den
        FROM {S}.promises WHERE status IN ('kept', 'broken') AND settled_at >= :d0 AND settled_at < :d1
        UNION ALL
        SELECT 'collector', t.assignee, count(*) FILTER (WHERE p.status = 'kept'), count(*)
        FROM {S}.promises p JOIN {S}.tasks t ON t.account_id = p.account_id AND t.kind = 'follow_up_promise'
        WHERE p.status IN ('kept', 'broken') AND p.settled_at >= :d0 AND p.settled_at < :d1
          AND t.assignee IS NOT NULL GROUP BY t.assignee""",
    "promise_punctuality": f"""
        SELECT 'overall' AS scope, 'all' AS scope_id, count(*) FILTER (WHERE on_time) AS num, count(*) AS den
        FROM {S}.promises WHERE status = 'kept' AND settled_at >= :d0 AND settled_at < :d1""",
    "automated_notification_rate": f"""
        WITH auto AS (
          SELECT COALESCE(data->>'campaign_id', '') AS campaign FROM {S}.activity
          WHERE kind = 'message_out.sent' AND at >= :d0 AND at < :d1),
        manual AS (
          SELECT count(*) AS n FROM {S}.tasks
          WHERE status = 'done' AND kind = ANY(:contact) AND completed_at >= :d0 AND completed_at < :d1)
        SELECT 'overall' AS scope, 'all' AS scope_id, (SELECT count(*) FROM auto) AS num,
               (SELECT count(*) FROM auto) + (SELECT n FROM manual) AS den
        UNION ALL
        SELECT 'campaign', campaign, count(*), count(*) FROM auto WHERE campaign <> '' GROUP BY campaign""",
    "response_rate": f"""
        WITH sent AS (
          SELECT DISTINCT account_id, COALESCE(data->>'campaign_id', '') AS campaign FROM {S}.activity
          WHERE kind = 'message_out.sent' AND at >= :w0 AND at < :d1),
        replied AS (
          SELECT DISTINCT account_id FROM {S}.activity WHERE kind = 'message_in' AND at >= :w0 AND at < :d1)
        SELECT 'overall' AS scope, 'all' AS scope_id,
               count(DISTINCT s.account_id) FILTER (WHERE r.account_id IS NOT NULL) AS num,
               count(DISTINCT s.account_id) AS den
        FROM sent s LEFT JOIN replied r USING (account_id)
        UNION ALL
        SELECT 'campaign', s.campaign, count(DISTINCT s.account_id) FILTER (WHERE r.account_id IS NOT NULL),
               count(DISTINCT s.account_id)
        FROM sent s LEFT JOIN replied r USING (account_id) WHERE s.campaign <> '' GROUP BY s.campaign""",
    "recovery_rate": f"""
        WITH p AS (
          SELECT account_id, COALESCE((data->>'last_payment_minor')::bigint, 0) AS paid, at,
                 GREATEST((data->>'balance_minor')::bigint, 0) AS left_
          FROM {S}.activity WHERE kind = 'account.payment' AND at >= :w0 AND at < :d1),
        last AS (SELECT DISTINCT ON (account_id) account_id, left_ FROM p ORDER BY account_id, at DESC)
        SELECT 'overall' AS scope, 'all' AS scope_id, (SELECT sum(paid) FROM p) AS num,
               (SELECT sum(paid) FROM p) + (SELECT sum(left_) FROM last) AS den""",
    "tasks_completed": f"""
        SELECT 'collector' AS scope, assignee AS scope_id, count(*) AS num, NULL::bigint AS den
        FROM {S}.tasks WHERE status = 'done' AND completed_at >= :d0 AND completed_at < :d1
          AND assignee IS NOT NULL GROUP BY assignee""",
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
    q = f"""SELECT day, scope, scope_id, metric, value, numerator, denominator FROM {S}.metric_snapshots
            WHERE day BETWEEN :a AND :b"""
    params: dict[str, Any] = {"a": start, "b": end}
    if scope:
        q += " AND scope = :s"
        params["s"] = scope
    params["n"] = limit
    rows = (await conn.execute(text(q + " ORDER BY day, metric, scope, scope_id LIMIT :n"), params)).all()
    return [dict(r._mapping) for r in rows]
