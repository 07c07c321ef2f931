"""The rows of the working-set export, read a page at a time (nothing holds the whole set in memory).

- Working set: one row per account in arrears (or every account): the console's read model (contact details
  opened with each account's key, shown in clear only to people who may see them, masked otherwise), its
  last contact from the console's timeline, and its next step from the segmenter (`GET /next-steps`, asked
  once per page). The segmenter being unreachable never fails the export: the rows say so in
  `next_step_note`, and the segmenter is not asked again for the rest of the file.
- Contact history: the timeline's contact events of the last 90 days of those accounts: messages, replies,
  payments, promises and manual contacts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from arrears_shared.auth import Principal
from arrears_shared.auth.masking import mask_email, mask_name, mask_phone
from arrears_shared.events import AccountChanged, MessageSent, OverrideRequested, PaymentFailed, ReplyReceived
from arrears_shared.money import format_minor
from arrears_shared.vault.cipher import open_value
from arrears_shared.vault.keys import vault
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .columns import HISTORY_DAYS

PAGE = 200  # accounts per page: one query here and one call to the segmenter
MSG, REPLY, OVERRIDE = MessageSent.ce_type, ReplyReceived.ce_type, OverrideRequested.ce_type
ACCOUNT, PAYMENT_FAILED = AccountChanged.ce_type, PaymentFailed.ce_type

# the console's own timeline lines (readmodels.handlers.summarize) that are contacts with the customer
# a dunning step: "sms sent (reminder, step 1)"; a confirmation or a payment retry: "Payment receipt sent by SMS"
_SENT = f"(t.ce_type = '{MSG}' AND (t.summary LIKE '% sent (%' OR t.summary LIKE '% sent by %'))"
_REPLY = f"t.ce_type = '{REPLY}'"
_MANUAL = f"(t.ce_type = '{OVERRIDE}' AND t.summary LIKE 'manual %')"
_PROMISE = f"(t.ce_type = '{OVERRIDE}' AND t.summary LIKE 'override record_promise%')"
_PAYMENT = (
    f"((t.ce_type = '{ACCOUNT}' AND t.summary LIKE 'account payment%') OR t.ce_type = '{PAYMENT_FAILED}')"
)
LAST_CONTACT = f"({_SENT} OR {_REPLY} OR {_MANUAL})"
HISTORY = f"({_SENT} OR {_REPLY} OR {_MANUAL} OR {_PROMISE} OR {_PAYMENT})"

NextSteps = Callable[[list[str]], Awaitable[dict[str, dict[str, Any]]]]


def scope_sql(everyone: bool) -> str:
    """Which accounts: in arrears (a balance left, past its due date, not paid or closed), or all of them."""
    if everyone:
        return "NOT a.removed"
    return (
        "NOT a.removed AND a.balance_minor > 0 AND a.status NOT IN ('paid', 'closed') AND a.due_date < :today"
    )


async def count(engine: AsyncEngine, schema: str, today: date, everyone: bool) -> int:
    async with engine.connect() as conn:
        q = f"SELECT count(*) FROM {schema}.accounts a WHERE {scope_sql(everyone)}"
        return int((await conn.execute(text(q), {"today": today})).scalar_one())


def contact_of(ce_type: str, summary: str) -> tuple[str, str, str]:
    """(kind, channel, outcome) of one of the timeline's contact lines."""
    words = summary.split()
    if ce_type == MSG and " sent by " in summary:
        channel = summary.split(" sent by ", 1)[1].split(":", 1)[0].strip()
        return "message", channel.lower(), "sent: " + summary.split(" sent by ", 1)[0].lower()
    if ce_type == MSG:
        return "message", words[0] if words else "", words[1] if len(words) > 1 else ""
    if ce_type == REPLY:
        intent = summary.split("reply: ", 1)[1].split(" ", 1)[0] if "reply: " in summary else ""
        return "reply", words[0] if words else "", intent
    if ce_type == OVERRIDE and summary.startswith("manual "):
        outcome = summary.split("): ", 1)[1].rsplit(" by ", 1)[0] if "): " in summary else ""
        return "manual_contact", words[1] if len(words) > 1 else "", outcome
    if ce_type == OVERRIDE:
        return "promise", "", "promise to pay"
    if ce_type == PAYMENT_FAILED:
        return "payment", "", "failed"
    return "payment", "", "paid"


@dataclass
class Segmenter:
    """The next steps of a page of accounts, or a note once the segmenter could not answer."""

    ask: NextSteps
    note: str = ""
    failures: list[str] = field(default_factory=list)

    async def steps(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if self.note:
            return {}
        try:
            return await self.ask(ids)
        except Exception as e:  # noqa: BLE001 - whatever went wrong, the export goes on without next steps
            detail = getattr(e, "detail", None) or type(e).__name__
            self.note = f"segmenter unavailable ({detail}): next step unknown"
            self.failures.append(self.note)
            return {}


def _masked(who: Principal, value: str | None, mask: Callable[[str], str]) -> str:
    if not value:
        return ""
    return value if who.sees_pii else mask(value)


def working_set_row(who: Principal, r: Any, key: Any, step: dict[str, Any] | None, note: str) -> list[Any]:
    name = open_value(key, r.account_id, r.customer_name) or ""
    phone = open_value(key, r.account_id, r.phone)
    email = open_value(key, r.account_id, r.email)
    kind, channel, outcome = contact_of(r.lc_type, r.lc_summary) if r.lc_type else ("", "", "")
    s = step or {}
    return [
        r.account_id,
        name if who.sees_pii else mask_name(name),
        _masked(who, phone, mask_phone),
        _masked(who, email, mask_email),
        format_minor(r.balance_minor, r.currency),
        r.currency,
        r.due_date.isoformat(),
        max(0, r.dpd),
        r.bucket,
        r.status,
        "yes" if r.sms_consent else "no",
        "yes" if r.email_consent else "no",
        ",".join(r.opt_outs),
        "yes" if r.dnc else "",
        r.last_payment_date.isoformat() if r.last_payment_date else "",
        r.lc_at.isoformat() if r.lc_at else "",
        channel,
        outcome,
        s.get("step", ""),
        s.get("cycle", ""),
        s.get("tier") or "",
        ",".join(s.get("channels") or []),
        s.get("due_at") or "",
        s.get("hold") or "",
        s.get("hold_until") or s.get("promise_until") or "",
        note if step is None and note else ("" if step is not None else "no pending step"),
    ]


_BUCKET = """CASE WHEN dpd <= 0 THEN 'current' WHEN dpd <= 30 THEN '1-30' WHEN dpd <= 60 THEN '31-60'
    WHEN dpd <= 90 THEN '61-90' WHEN dpd <= 120 THEN '91-120' ELSE '120+' END"""


async def working_set(
    engine: AsyncEngine, schema: str, who: Principal, today: date, everyone: bool, segmenter: Segmenter
) -> AsyncIterator[list[Any]]:
    after = ""
    while True:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"""SELECT x.*, {_BUCKET} AS bucket FROM (
                          SELECT a.*, (CAST(:today AS date) - a.due_date) AS dpd,
                            COALESCE((SELECT array_agg(o.channel ORDER BY o.channel) FROM {schema}.opt_outs o
                                      WHERE o.account_id = a.account_id), '{{}}') AS opt_outs,
                            EXISTS (SELECT 1 FROM {schema}.timeline d WHERE d.account_id = a.account_id
                                    AND d.ce_type = '{OVERRIDE}' AND d.summary LIKE 'override do_not_contact%')
                              AS dnc,
                            lc.at AS lc_at, lc.ce_type AS lc_type, lc.summary AS lc_summary
                          FROM {schema}.accounts a
                          LEFT JOIN LATERAL (
                            SELECT t.at, t.ce_type, t.summary FROM {schema}.timeline t
                            WHERE t.account_id = a.account_id AND {LAST_CONTACT}
                            ORDER BY t.at DESC LIMIT 1) lc ON true
                          WHERE {scope_sql(everyone)} AND a.account_id COLLATE "C" > :after
                          ORDER BY a.account_id COLLATE "C" LIMIT :n) x
                        ORDER BY x.account_id COLLATE "C"
                        """
                    ),
                    {"today": today, "after": after, "n": PAGE},
                )
            ).all()
            keys = await vault().for_reading(conn, [r.account_id for r in rows])
        if not rows:
            return
        steps = await segmenter.steps([r.account_id for r in rows])
        for r in rows:
            yield working_set_row(who, r, keys.get(r.account_id), steps.get(r.account_id), segmenter.note)
        if len(rows) < PAGE:
            return
        after = rows[-1].account_id


async def contact_history(
    engine: AsyncEngine, schema: str, who: Principal, today: date, now: datetime, everyone: bool
) -> AsyncIterator[list[Any]]:
    """The last 90 days' contact events of the accounts in scope, by account then time."""
    since = now - timedelta(days=HISTORY_DAYS)
    after: tuple[str, datetime, int] = ("", since, 0)
    first = True
    while True:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"""SELECT t.id, t.account_id, t.at, t.ce_type, t.summary
                        FROM {schema}.timeline t JOIN {schema}.accounts a USING (account_id)
                        WHERE {scope_sql(everyone)} AND t.at >= :since AND {HISTORY}
                          AND (:first OR (t.account_id COLLATE "C", t.at, t.id) > (CAST(:a AS text) COLLATE "C", :at, :id))
                        ORDER BY t.account_id COLLATE "C", t.at, t.id LIMIT :n"""
                    ),
                    {
                        "today": today,
                        "since": since,
                        "first": first,
                        "a": after[0],
                        "at": after[1],
                        "id": after[2],
                        "n": PAGE * 5,
                    },
                )  # fmt: skip
            ).all()
        for r in rows:
            kind, channel, outcome = contact_of(r.ce_type, r.summary)
            # the line itself may quote a customer (a reply's promise) or a person's reason: people who may
            # not see personal data get the kind, channel and outcome only
            yield [r.account_id, r.at.isoformat(), kind, channel, outcome, r.summary if who.sees_pii else ""]
        if len(rows) < PAGE * 5:
            return
        first = False
        after = (rows[-1].account_id, rows[-1].at, rows[-1].id)
