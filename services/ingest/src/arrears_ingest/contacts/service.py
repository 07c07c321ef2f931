"""Recording contact facts from events, and the queue of facts the sheet does not show yet.

A consumer batch is folded in memory (per account, the newest contact, reply and promise by the event's own
time: `sent_at` / `received_at`), then one upsert writes it. The upsert keeps each stored fact unless the
batch's is strictly newer, so events that arrive late or out of order (a replay, a slow partition) never
overwrite a newer fact; a row changes (and its `version` grows, making it pending for the sheet) only when
some fact did.

What counts:
- contact = a `message-sent` with status `sent` or `failed` (an attempt reached the provider); `suppressed`
  is no contact (nothing left us);
- reply = every `reply-received`; its intent is the Intent cell;
- promise = a `reply-received` with intent `promise_to_pay` (amount and date as extracted; a later reply of
  another intent does not erase it, a later promise replaces it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from datetime import datetime

from arrears_shared.events import DeliveryStatus, Event, Intent, MessageSent, ReplyReceived
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .models import Facts, Fold

_CONTACT = (DeliveryStatus.SENT, DeliveryStatus.FAILED)


def _newer(new: datetime | None, old: datetime | None) -> bool:
    return new is not None and (old is None or new > old)


def fold(events: Iterable[Event]) -> dict[str, Fold]:
    """The newest fact of each kind per account among `events` (other event types are ignored)."""
    out: dict[str, Fold] = {}
    for ev in events:
        cur = out.get(ev.account_id, Fold())
        if isinstance(ev, MessageSent):
            if ev.status not in _CONTACT or not _newer(ev.sent_at, cur.contact_at):
                continue
            cur = replace(
                cur, contact_at=ev.sent_at, contact_channel=str(ev.channel), contact_status=ev.status.value
            )
        elif isinstance(ev, ReplyReceived):
            if _newer(ev.received_at, cur.reply_at):
                cur = replace(
                    cur, reply_at=ev.received_at, reply_channel=str(ev.channel), reply_intent=ev.intent.value
                )
            if ev.intent is Intent.PROMISE_TO_PAY and _newer(ev.received_at, cur.promise_at):
                cur = replace(
                    cur,
                    promise_at=ev.received_at,
                    promise_amount_minor=ev.promise_amount_minor,
                    promise_date=ev.promise_date,
                )
        else:
            continue
        out[ev.account_id] = cur
    return out


def _is_newer(kind: str) -> str:
    return f"(EXCLUDED.{kind}_at IS NOT NULL AND (f.{kind}_at IS NULL OR EXCLUDED.{kind}_at > f.{kind}_at))"


def _take(kind: str, column: str) -> str:
    return f"{column} = CASE WHEN {_is_newer(kind)} THEN EXCLUDED.{column} ELSE f.{column} END"


_COLUMNS = {
    "contact": ("contact_at", "contact_channel", "contact_status"),
    "reply": ("reply_at", "reply_channel", "reply_intent"),
    "promise": ("promise_at", "promise_amount_minor", "promise_currency", "promise_date"),
}
_UPSERT_SET = ", ".join(_take(kind, c) for kind, cols in _COLUMNS.items() for c in cols)
_UPSERT_WHERE = " OR ".join(_is_newer(kind) for kind in _COLUMNS)


async def record(
    conn: AsyncConnection, schema: str, folds: dict[str, Fold], now: datetime, default_currency: str
) -> None:
    """Store one batch's facts (one upsert); only strictly newer facts replace stored ones."""
    if not folds:
        return
    ids = sorted(folds)  # a stable lock order between concurrent batches
    promised = [a for a in ids if folds[a].promise_at is not None]
    currency: dict[str, str] = {}
    if promised:
        rows = await conn.execute(
            text(
                f"SELECT account_id, data->>'currency' FROM {schema}.snapshot "
                "WHERE account_id = ANY(CAST(:a AS text[]))"
            ),
            {"a": promised},
        )
        currency = {a: c for a, c in rows.tuples() if c}
    f = [folds[a] for a in ids]
    await conn.execute(
        text(
            f"INSERT INTO {schema}.contact_facts AS f (account_id, contact_at, contact_channel, contact_status, "
            "reply_at, reply_channel, reply_intent, promise_at, promise_amount_minor, promise_currency, "
            "promise_date, updated_at) "
            "SELECT *, CAST(:now AS timestamptz) FROM unnest(CAST(:a AS text[]), CAST(:ca AS timestamptz[]), "
            "CAST(:cc AS text[]), CAST(:cs AS text[]), CAST(:ra AS timestamptz[]), CAST(:rc AS text[]), "
            "CAST(:ri AS text[]), CAST(:pa AS timestamptz[]), CAST(:pm AS bigint[]), CAST(:pc AS text[]), "
            "CAST(:pd AS date[])) "
            f"ON CONFLICT (account_id) DO UPDATE SET {_UPSERT_SET}, version = f.version + 1, "
            f"unplaced = false, updated_at = EXCLUDED.updated_at WHERE {_UPSERT_WHERE}"
        ),
        {
            "a": ids,
            "ca": [x.contact_at for x in f],
            "cc": [x.contact_channel for x in f],
            "cs": [x.contact_status for x in f],
            "ra": [x.reply_at for x in f],
            "rc": [x.reply_channel for x in f],
            "ri": [x.reply_intent for x in f],
            "pa": [x.promise_at for x in f],
            "pm": [x.promise_amount_minor for x in f],
            "pc": [currency.get(a, default_currency) if folds[a].promise_at else None for a in ids],
            "pd": [x.promise_date for x in f],
            "now": now,
        },
    )


_FACT_COLUMNS = (
    "account_id, version, contact_at, contact_channel, contact_status, reply_at, reply_channel, reply_intent, "
    "promise_at, promise_amount_minor, promise_currency, promise_date"
)


async def load_pending(conn: AsyncConnection, schema: str, after: str | None, limit: int) -> list[Facts]:
    """The next `limit` accounts whose facts changed since they were last written, by account id."""
    where = "" if after is None else "AND account_id > :after "
    rows = await conn.execute(
        text(
            f"SELECT {_FACT_COLUMNS} FROM {schema}.contact_facts WHERE version > written_version "
            f"{where}ORDER BY account_id LIMIT :lim"
        ),
        {"lim": limit} | ({} if after is None else {"after": after}),
    )
    return [Facts(*r) for r in rows.tuples()]


async def count_pending(conn: AsyncConnection, schema: str) -> int:
    n = await conn.execute(
        text(f"SELECT count(*) FROM {schema}.contact_facts WHERE version > written_version")
    )
    return int(n.scalar_one())


async def mark_written(
    conn: AsyncConnection, schema: str, items: Sequence[Facts], *, unplaced: bool = False
) -> None:
    """These versions are in the sheet (or, `unplaced`, cannot be: the account is not in the sheet). A fact
    that changed meanwhile has a higher version and stays pending."""
    if not items:
        return
    await conn.execute(
        text(
            f"UPDATE {schema}.contact_facts f SET written_version = GREATEST(f.written_version, x.ver), "
            "unplaced = :u FROM unnest(CAST(:a AS text[]), CAST(:v AS bigint[])) AS x(a, ver) "
            "WHERE f.account_id = x.a AND f.version = x.ver"
        ),
        {"a": [i.account_id for i in items], "v": [i.version for i in items], "u": unplaced},
    )


async def revive_unplaced(conn: AsyncConnection, schema: str, in_sheet: Collection[str]) -> None:
    """Accounts whose facts found no sheet row before and are in the sheet now (`in_sheet`): pending again."""
    rows = await conn.execute(text(f"SELECT account_id FROM {schema}.contact_facts WHERE unplaced"))
    back = [a for (a,) in rows.tuples() if a in in_sheet]
    if back:
        await conn.execute(
            text(
                f"UPDATE {schema}.contact_facts SET written_version = 0, unplaced = false "
                "WHERE unplaced AND account_id = ANY(CAST(:a AS text[]))"
            ),
            {"a": back},
        )
