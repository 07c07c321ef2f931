"""Queries over the read models (plain async functions taking a connection)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from arrears_shared import paging
from arrears_shared.auth.masking import mask_email, mask_name, mask_phone
from arrears_shared.events import AgingBucket
from arrears_shared.money import RateTable, configured_rates, note_unpriced
from arrears_shared.vault.cipher import open_value
from arrears_shared.vault.keys import vault
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .models import (
    AccountList,
    AccountView,
    AgingReport,
    AgingRow,
    ChannelOutcomes,
    CurrencyTotal,
    DlqItem,
    DlqList,
    RejectItem,
    RejectList,
    Summary,
    Timeline,
    TimelineItem,
)

BUCKETS = [b.value for b in AgingBucket]
# days past due and aging bucket are computed at read time from due_date (they change every day)
_DPD = "(CAST(:today AS date) - a.due_date)"
_BUCKET = f"""CASE WHEN {_DPD} <= 0 THEN 'current' WHEN {_DPD} <= 30 THEN '1-30' WHEN {_DPD} <= 60 THEN '31-60'
    WHEN {_DPD} <= 90 THEN '61-90' WHEN {_DPD} <= 120 THEN '91-120' ELSE '120+' END"""
_OUTSTANDING = "NOT a.removed AND a.balance_minor > 0 AND a.status NOT IN ('paid', 'closed')"


async def aging(
    conn: AsyncConnection, schema: str, today: date, rates: RateTable | None = None
) -> AgingReport:
    """Outstanding balances by aging bucket and currency, each converted to the reporting currency too.

    `rates`: default the table ARREARS_FX_RATES_FILE names (else the packaged one). Each (bucket, currency)
    sum is converted once; every reporting total is a sum of those converted cells, so the figures add up."""
    rates = rates or configured_rates()
    rows = await conn.execute(
        text(
            f"""SELECT {_BUCKET} AS bucket, a.currency, count(*) AS accounts, sum(a.balance_minor) AS balance
            FROM {schema}.accounts a WHERE {_OUTSTANDING} GROUP BY 1, 2"""
        ),
        {"today": today},
    )
    out = [
        AgingRow(
            bucket=r.bucket,
            currency=r.currency,
            accounts=r.accounts,
            balance_minor=r.balance,
            reporting_minor=rates.to_reporting_minor(int(r.balance), r.currency),
        )
        for r in rows
    ]
    out.sort(key=lambda r: (r.currency, BUCKETS.index(r.bucket)))
    by_bucket = dict.fromkeys(BUCKETS, 0)
    totals: dict[str, CurrencyTotal] = {}
    unpriced: list[str] = []
    for r in out:
        t = totals.setdefault(
            r.currency, CurrencyTotal(currency=r.currency, accounts=0, balance_minor=0, reporting_minor=0)
        )
        t.accounts += r.accounts
        t.balance_minor += r.balance_minor
        if r.reporting_minor is None:
            t.reporting_minor = None
            if r.currency not in unpriced:
                unpriced.append(r.currency)
                note_unpriced(r.currency, "console.aging")
        else:
            by_bucket[r.bucket] += r.reporting_minor
            if t.reporting_minor is not None:
                t.reporting_minor += r.reporting_minor
    return AgingReport(
        as_of=today,
        buckets=BUCKETS,
        rows=out,
        reporting_currency=rates.reporting_currency,
        rates_as_of=rates.as_of,
        currencies=list(totals.values()),
        reporting_by_bucket=by_bucket,
        reporting_total_minor=sum(by_bucket.values()),
        unpriced_currencies=unpriced,
    )


async def accounts(
    conn: AsyncConnection,
    schema: str,
    today: date,
    *,
    bucket: str | None,
    q: str | None,
    limit: int,
    names: bool = True,
    status: str | None = None,
    campaign: str | None = None,
    only: list[str] | None = None,
    band: str | None = None,
) -> AccountList:
    """Accounts by days past due. `q` matches part of the account id and, when `names` (the caller may see
    personal data), the name (each word of `q` starts a word of the name), the email address (whole, its
    local part or its domain) or the end of the phone number (digits only: "555 0142" finds +14155550142), through blind indexes: names and
    addresses are stored sealed (arrears_shared.vault)."""
    where = ["NOT a.removed"]
    params: dict[str, object] = {"today": today, "limit": limit}
    if bucket:
        where.append(f"{_BUCKET} = :bucket")
        params["bucket"] = bucket
    if status:
        where.append("a.status = :status")
        params["status"] = status
    if campaign:
        where.append("a.campaign_id = :campaign")
        params["campaign"] = campaign
    if band:  # the band of the account's latest model score (readmodels.scores)
        where.append(
            f"EXISTS (SELECT 1 FROM {schema}.scores s WHERE s.account_id = a.account_id AND s.band = :band)"
        )
        params["band"] = band
    if only is not None:  # e.g. the accounts of one assignee's open tasks
        where.append("a.account_id = ANY(CAST(:only AS text[]))")
        params["only"] = only
    if q:
        like = ["a.account_id ILIKE :q"]
        if names:
            v = vault()
            if words := v.name_query(q):
                like.append("a.name_bidx @> CAST(:nb AS text[])")
                params["nb"] = words
            like.append("a.email_bidx && CAST(:eb AS text[])")
            params["eb"] = v.email_query(q)
            if tail := v.phone_query(q):
                like.append("a.phone_bidx @> ARRAY[CAST(:pb AS text)]")
                params["pb"] = tail
        where.append("(" + " OR ".join(like) + ")")
        params["q"] = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    cond = " AND ".join(where)
    found = await conn.execute(
        text(
            f"""SELECT a.*, {_DPD} AS dpd, {_BUCKET} AS bucket, count(*) OVER () AS total,
                   COALESCE((SELECT array_agg(o.channel ORDER BY o.channel) FROM {schema}.opt_outs o
                             WHERE o.account_id = a.account_id), '{{}}') AS opt_outs,
                   (SELECT s.band FROM {schema}.scores s WHERE s.account_id = a.account_id) AS risk_band
            FROM {schema}.accounts a WHERE {cond}
            ORDER BY {_DPD} DESC, a.balance_minor DESC, a.account_id LIMIT :limit"""
        ),
        params,
    )
    rows = found.all()
    count = rows[0].total if rows else 0  # one scan: the window count is taken before the LIMIT
    v = vault()
    keys = await v.for_reading(conn, [r.account_id for r in rows])

    def opened(r: Any, value: str | None) -> str | None:
        return open_value(keys.get(r.account_id), r.account_id, value)

    items = [
        AccountView(
            account_id=r.account_id,
            customer_name=opened(r, r.customer_name) or "",
            balance_minor=r.balance_minor,
            currency=r.currency,
            due_date=r.due_date,
            days_past_due=max(0, r.dpd),
            bucket=r.bucket,
            status=r.status,
            source=r.source,
            sms_consent=r.sms_consent,
            email_consent=r.email_consent,
            opt_outs=list(r.opt_outs),
            last_payment_date=r.last_payment_date,
            as_of=r.as_of,
            phone=opened(r, r.phone),
            email=opened(r, r.email),
            campaign_id=r.campaign_id,
            risk_band=r.risk_band,
        )
        for r in rows
    ]
    return AccountList(items=items, count=count)


async def timeline(
    conn: AsyncConnection, schema: str, account_id: str | None, limit: int, cursor: str | None = None
) -> Timeline:
    """One page, newest first (`next_cursor` names the next page): the account's events by time, or the
    recent activity of every account in arrival order (served by the primary key)."""
    if account_id is not None:
        key: tuple[tuple[str, type], ...] = (("at", datetime), ("id", int))
        where = "account_id = :a"
    else:
        key, where = (("id", int),), "TRUE"
    after, params = paging.after_sql(cursor, key)
    order = ", ".join(f"{c} DESC" for c, _ in key)
    rows = await conn.execute(
        text(
            f"SELECT id, ce_id, account_id, topic, ce_type, at, summary FROM {schema}.timeline "
            f"WHERE {where} AND {after} ORDER BY {order} LIMIT :n"
        ),
        {"a": account_id, "n": limit + 1, **params},
    )
    found, nxt = paging.page(rows.all(), limit, lambda r: tuple(getattr(r, c) for c, _ in key))
    return Timeline(
        account_id=account_id,
        items=[TimelineItem.model_validate(r._asdict()) for r in found],
        next_cursor=nxt,
    )


async def summary(conn: AsyncConnection, schema: str) -> Summary:
    counters = (await conn.execute(text(f"SELECT topic, dim, n FROM {schema}.counters"))).all()
    per_topic = {r.topic: r.n for r in counters if r.dim == ""}
    channels: dict[str, ChannelOutcomes] = {}
    intents: dict[str, int] = {}
    for r in counters:
        if r.topic == "message-sent" and r.dim:
            ch, status = r.dim.split(":", 1)
            setattr(channels.setdefault(ch, ChannelOutcomes()), status, r.n)
        elif r.topic == "reply-received" and r.dim.startswith("intent:"):
            intents[r.dim[len("intent:") :]] = r.n
    one = (
        await conn.execute(
            text(
                f"""SELECT (SELECT count(*) FROM {schema}.cases WHERE status = 'open') AS open_cases,
                       (SELECT count(*) FROM {schema}.rejects) AS rejects,
                       (SELECT count(*) FROM {schema}.dlq) AS dlq,
                       (SELECT count(*) FROM {schema}.accounts WHERE NOT removed) AS accounts"""
            )
        )
    ).one()
    return Summary(
        events_per_topic=per_topic,
        notices_due=per_topic.get("notice-due", 0),
        messages_by_channel=channels,
        replies_by_intent=intents,
        open_cases=one.open_cases,
        rejects=one.rejects,
        dlq=one.dlq,
        accounts=one.accounts,
    )


async def dlq(
    conn: AsyncConnection, schema: str, limit: int, topic: str | None = None, cursor: str | None = None
) -> DlqList:
    """One page of dead letters, newest first, the count of all, and the next page's cursor."""
    where = "topic = :t" if topic else "TRUE"
    after, params = paging.after_sql(cursor, (("recorded_at", datetime), ("id", int)))
    rows = await conn.execute(
        text(
            f"""SELECT id, topic, partition, "offset", ce_id, ce_type, account_id, original_topic,
                   consumer_group, reason, attempts, service, dead_lettered_at, recorded_at
            FROM {schema}.dlq WHERE {where} AND {after} ORDER BY recorded_at DESC, id DESC LIMIT :n"""
        ),
        {"t": topic, "n": limit + 1, **params},
    )
    found, nxt = paging.page(rows.all(), limit, lambda r: (r.recorded_at, r.id))
    count = (
        await conn.execute(text(f"SELECT count(*) FROM {schema}.dlq WHERE {where}"), {"t": topic})
    ).scalar_one()
    return DlqList(items=[DlqItem.model_validate(r._asdict()) for r in found], count=count, next_cursor=nxt)


async def rejects(conn: AsyncConnection, schema: str, limit: int, cursor: str | None = None) -> RejectList:
    """One page of rejected rows, newest first, the count of all, and the next page's cursor."""
    after, params = paging.after_sql(cursor, (("rejected_at", datetime), ("ce_id", str)))
    rows = await conn.execute(
        text(
            f"""SELECT ce_id, account_id, source, batch_id, row_number, "column", value, reason, rejected_at
            FROM {schema}.rejects WHERE {after} ORDER BY rejected_at DESC, ce_id DESC LIMIT :n"""
        ),
        {"n": limit + 1, **params},
    )
    found, nxt = paging.page(rows.all(), limit, lambda r: (r.rejected_at, r.ce_id))
    count = (await conn.execute(text(f"SELECT count(*) FROM {schema}.rejects"))).scalar_one()
    return RejectList(
        items=[RejectItem.model_validate(r._asdict()) for r in found], count=count, next_cursor=nxt
    )


def mask_personal(found: AccountList) -> AccountList:
    """Names, phones and emails masked, for callers without `accounts.read` (viewers)."""
    for item in found.items:
        item.customer_name = mask_name(item.customer_name)
        item.phone = mask_phone(item.phone) if item.phone else None
        item.email = mask_email(item.email) if item.email else None
    return found


async def campaign_of(conn: AsyncConnection, schema: str, account_id: str) -> str | None:
    """The campaign of the account's latest notice (None: the default policy, or no notice yet)."""
    found = await conn.execute(
        text(f"SELECT campaign_id FROM {schema}.accounts WHERE account_id = :a"), {"a": account_id}
    )
    return found.scalar()
