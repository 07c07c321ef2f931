"""One batch handler for all six event topics: a few bulk statements per batch, whatever its size.

Per batch: the latest AccountChanged per account (upsert guarded by `as_of`), one timeline insert, one
counters upsert (aggregated in Python), opt-outs, rejects and cases — each a single `unnest` statement.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from arrears_shared.cloudevents import Envelope
from arrears_shared.events import (
    AccountChanged,
    AccountScored,
    CaseEscalated,
    DunningStopped,
    Event,
    IngestRejected,
    Intent,
    LinkClicked,
    MessageSent,
    NoticeDue,
    OverrideRequested,
    PaymentFailed,
    PaymentRetryChanged,
    ReplyReceived,
    SettlementOfferChanged,
    channel_label,
    notice_label,
)
from arrears_shared.money import format_minor
from arrears_shared.stream.transaction import Transaction
from arrears_shared.vault.cipher import seal_value
from arrears_shared.vault.keys import vault
from sqlalchemy import text

from . import scores as model_scores


def money(minor: int, currency: str) -> str:
    return format_minor(minor, currency)  # the currency's own exponent (JPY 0, KWD 3)


def summarize(ev: Event) -> str:
    """One line for the timeline; no contact details (phones, emails, reply text)."""
    if isinstance(ev, AccountChanged):
        return (
            f"account {ev.change} ({ev.source}): balance {money(ev.balance_minor, ev.currency)}, "
            f"due {ev.due_date.isoformat()}, status {ev.status.value}"
        )
    if isinstance(ev, NoticeDue) and ev.purpose != "dunning":
        return f"notice due: {notice_label(ev.purpose)} via {channel_label(ev.channel)}"
    if isinstance(ev, NoticeDue):
        return (
            f"notice due: {ev.tier.value} via {ev.channel} (step {ev.step}, "
            f"{ev.days_past_due} dpd, {money(ev.balance_minor, ev.currency)})"
        )
    if isinstance(ev, MessageSent):
        extra = f": {ev.reason[:120]}" if ev.reason else ""
        if ev.purpose != "dunning":  # "Payment receipt sent by SMS"
            return f"{notice_label(ev.purpose)} {ev.status.value} by {channel_label(ev.channel)}{extra}"
        return f"{ev.channel} {ev.status.value} ({ev.tier.value}, step {ev.step}){extra}"
    if isinstance(ev, PaymentRetryChanged):
        nxt = f", next {ev.next_retry_at:%Y-%m-%d %H:%M} UTC" if ev.next_retry_at else ""
        return (
            f"failed payment {ev.status.replace('_', ' ')}: retry {ev.retry_count} of {ev.retries_max}, "
            f"{ev.failures} failed attempts{nxt}" + ("" if ev.at_risk else "; no longer at risk")
        )
    if isinstance(ev, ReplyReceived):
        return ev.summary()
    if isinstance(ev, IngestRejected):
        col = f" column {ev.column}" if ev.column else ""
        return f"{ev.source} row {ev.row_number} rejected{col}: {ev.reason[:160]}"
    if isinstance(ev, CaseEscalated):
        return f"case opened: {ev.reason} ({ev.priority})"
    if isinstance(ev, OverrideRequested) and ev.action == "record_contact":
        # no note: it is the person's free text about the customer (the account page shows it, sealed)
        outcome = (ev.contact_outcome or "?").replace("_", " ")
        return f"manual {ev.contact_channel} ({ev.contact_direction}): {outcome} by {ev.actor} ({ev.role})"
    if isinstance(ev, OverrideRequested) and ev.action == "set_channel_preference":
        chans = " → ".join(str(c) for c in ev.channels) or "the policy's order"
        quiet = f"; quiet times {ev.contact_window.describe()}" if ev.contact_window is not None else ""
        return f"contact preferences: channels {chans}{quiet} by {ev.actor} ({ev.role})"
    if isinstance(ev, OverrideRequested) and ev.action == "record_promise":
        by = ev.promise_date.isoformat() if ev.promise_date else "?"
        if ev.settlement_offer_id:
            what = f"settlement offer {ev.settlement_offer_id} accepted: pay by {by}"
        elif ev.promise_plan_every:
            what = f"instalment plan: {ev.plan_instalments or '?'} payments every {ev.promise_plan_every} from {by}"
        else:
            what = f"promise to pay by {by}"
        return f"{what} ({ev.actor}, {ev.role})"
    if isinstance(ev, OverrideRequested):
        step = f" step {ev.step}" if ev.step is not None else ""
        return f"override {ev.action}{step} by {ev.actor} ({ev.role})" + (
            f": {ev.reason[:160]}" if ev.reason else ""
        )
    if isinstance(ev, PaymentFailed):
        amount = f" {money(ev.amount_minor, ev.currency)}" if ev.amount_minor and ev.currency else ""
        return f"payment{amount} failed ({ev.provider}): {ev.failure_code or ev.failure_message[:120] or '?'}"
    if isinstance(ev, LinkClicked):
        tier = f"{ev.tier.value} " if ev.tier else ""
        return f"payment link opened: {tier}{ev.channel} notice (sent {ev.issued_at:%Y-%m-%d})"
    if isinstance(ev, SettlementOfferChanged):
        return (
            f"settlement offer {ev.offer_id} {ev.status}: {money(ev.amount_minor, ev.currency)} "
            f"(of {money(ev.balance_minor, ev.currency)}) by {ev.expires_on.isoformat()}, {ev.actor} ({ev.role})"
        )
    if isinstance(ev, AccountScored):
        return model_scores.summary(ev)
    if isinstance(ev, DunningStopped):
        return stop_summary(ev)
    return type(ev).__name__


STOP_REASONS = {
    "settled": "the accepted settlement is paid in full (the rest is written off)",
    "do_not_contact": "do-not-contact",
    "dispute": "held as disputed",
    "paused": "paused until resumed",
}


def stop_summary(ev: DunningStopped) -> str:
    """What a queued notice was withdrawn for: "queued notices withdrawn (sms, email): do-not-contact"."""
    scope = f" ({', '.join(channel_label(c) for c in ev.channels)})" if ev.channels else ""
    return f"queued notices withdrawn{scope}: {STOP_REASONS.get(ev.reason, ev.reason)}"


def counter_dims(ev: Event) -> list[str]:
    if isinstance(ev, DunningStopped):
        return [f"stopped:{ev.reason}"]  # not a notice: the topic's total counts notices due
    dims = [""]
    if isinstance(ev, NoticeDue):
        dims.append(f"channel:{ev.channel}")
    elif isinstance(ev, MessageSent):
        dims.append(f"{ev.channel}:{ev.status.value}")
    elif isinstance(ev, ReplyReceived):
        dims.append(f"intent:{ev.intent.value}")
    elif isinstance(ev, CaseEscalated):
        dims.append(f"reason:{ev.reason}")
    elif isinstance(ev, PaymentFailed):
        dims.append("payment:failed")
    return dims


async def _bulk(tx: Transaction, sql: str, columns: dict[str, tuple[str, list[Any]]]) -> None:
    """`INSERT ... SELECT * FROM unnest(...)` with one typed array per column."""
    if not next(iter(columns.values()))[1]:
        return
    arrays = ", ".join(f"CAST(:{name} AS {typ}[])" for name, (typ, _) in columns.items())
    await tx.conn.execute(
        text(sql.format(s=tx.schema, unnest=f"unnest({arrays})")),
        {name: values for name, (_, values) in columns.items()},
    )


async def copy_timeline(tx: Transaction, tl: dict[str, list[Any]]) -> None:
    """COPY the batch's timeline rows (several times faster than INSERT), inside the batch transaction."""
    if not tl["ce"]:
        return
    raw = await tx.conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await driver.copy_records_to_table(
        "timeline",
        schema_name=tx.schema,
        columns=["ce_id", "account_id", "topic", "ce_type", "at", "summary"],
        records=zip(tl["ce"], tl["acc"], tl["topic"], tl["type"], tl["at"], tl["sum"], strict=True),
    )


async def _upsert_accounts(tx: Transaction, acc: list[AccountChanged]) -> None:
    """The latest facts of each account, its name and addresses sealed with its key and blind-indexed for
    search (arrears_shared.vault): the read model never holds them in clear."""
    if not acc:
        return
    v = vault()
    keys = await v.for_writing(tx.conn, [a.account_id for a in acc])
    await _bulk(
        tx,
        """INSERT INTO {s}.accounts (account_id, customer_name, balance_minor, currency, due_date, status, source,
               removed, sms_consent, email_consent, last_payment_date, as_of, phone, email, name_bidx,
               phone_bidx, email_bidx)
           SELECT u.id, u.name, u.bal, u.cur, u.due, u.st, u.src, u.rm, u.sc, u.ec, u.lp, u.asof, u.ph, u.em,
                  string_to_array(u.nb, ' '), string_to_array(u.pb, ' '), string_to_array(u.eb, ' ')
             FROM {unnest} AS u(id, name, bal, cur, due, st, src, rm, sc, ec, lp, asof, ph, em, nb, pb, eb)
           ON CONFLICT (account_id) DO UPDATE SET customer_name = EXCLUDED.customer_name,
               balance_minor = EXCLUDED.balance_minor, currency = EXCLUDED.currency, due_date = EXCLUDED.due_date,
               status = EXCLUDED.status, source = EXCLUDED.source, removed = EXCLUDED.removed,
               sms_consent = EXCLUDED.sms_consent, email_consent = EXCLUDED.email_consent,
               last_payment_date = EXCLUDED.last_payment_date, as_of = EXCLUDED.as_of, phone = EXCLUDED.phone,
               email = EXCLUDED.email, name_bidx = EXCLUDED.name_bidx, phone_bidx = EXCLUDED.phone_bidx,
               email_bidx = EXCLUDED.email_bidx, updated_at = now()
           WHERE {s}.accounts.as_of <= EXCLUDED.as_of""",
        {
            "id": ("text", [a.account_id for a in acc]),
            "name": ("text", [seal_value(keys[a.account_id], a.account_id, a.customer_name) for a in acc]),
            "bal": ("bigint", [a.balance_minor for a in acc]),
            "cur": ("text", [a.currency for a in acc]),
            "due": ("date", [a.due_date for a in acc]),
            "st": ("text", [a.status.value for a in acc]),
            "src": ("text", [a.source for a in acc]),
            "rm": ("boolean", [a.change == "removed" for a in acc]),
            "sc": ("boolean", [a.sms_consent for a in acc]),
            "ec": ("boolean", [a.email_consent for a in acc]),
            "lp": ("date", [a.last_payment_date for a in acc]),
            "asof": ("timestamptz", [a.as_of for a in acc]),
            "ph": ("text", [seal_value(keys[a.account_id], a.account_id, a.phone) for a in acc]),
            "em": ("text", [seal_value(keys[a.account_id], a.account_id, a.email) for a in acc]),
            "nb": ("text", [" ".join(v.name_index(a.customer_name)) for a in acc]),
            "pb": ("text", [" ".join(v.phone_index(a.phone)) for a in acc]),
            "eb": ("text", [" ".join(v.email_index(a.email)) for a in acc]),
        },
    )


async def handle_events(events: Sequence[Envelope], tx: Transaction) -> None:
    accounts: dict[str, AccountChanged] = {}
    opt_outs: dict[tuple[str, str], datetime] = {}
    rejects: list[tuple[Envelope, IngestRejected]] = []
    cases: dict[str, CaseEscalated] = {}
    campaigns: dict[str, str] = {}  # account -> campaign of its latest notice in this batch
    scored: list[AccountScored] = []
    counts: Counter[tuple[str, str]] = Counter()
    last_at: dict[tuple[str, str], datetime] = {}
    tl: dict[str, list[Any]] = {"ce": [], "acc": [], "topic": [], "type": [], "at": [], "sum": []}
    for env in events:
        ev = env.data
        tl["ce"].append(env.id)
        tl["acc"].append(ev.account_id)
        tl["topic"].append(ev.topic)
        tl["type"].append(env.type)
        # a manual contact stands on the timeline when it happened, not when it was recorded (or imported)
        contacted_at = ev.contacted_at if isinstance(ev, OverrideRequested) else None
        tl["at"].append(contacted_at or env.time)
        tl["sum"].append(summarize(ev))
        for dim in counter_dims(ev):
            counts[(ev.topic, dim)] += 1
            prev = last_at.get((ev.topic, dim))
            last_at[(ev.topic, dim)] = env.time if prev is None or env.time > prev else prev
        if isinstance(ev, AccountChanged):
            cur = accounts.get(ev.account_id)
            if cur is None or cur.as_of <= ev.as_of:
                accounts[ev.account_id] = ev
        elif isinstance(ev, ReplyReceived) and ev.intent is Intent.OPT_OUT:
            opt_outs.setdefault((ev.account_id, ev.channel), ev.received_at)
        elif isinstance(ev, IngestRejected):
            rejects.append((env, ev))
        elif isinstance(ev, NoticeDue) and ev.campaign_id:
            campaigns[ev.account_id] = ev.campaign_id
        elif isinstance(ev, CaseEscalated):
            cases[ev.case_id] = ev
        elif isinstance(ev, AccountScored):
            scored.append(ev)

    acc = list(accounts.values())
    await _upsert_accounts(tx, acc)
    await model_scores.upsert_scores(tx, scored)
    if campaigns:
        ids = sorted(campaigns)
        await _bulk(
            tx,
            """UPDATE {s}.accounts a SET campaign_id = c.campaign_id FROM {unnest} AS c(account_id, campaign_id)
               WHERE a.account_id = c.account_id""",
            {"id": ("text", ids), "cmp": ("text", [campaigns[i] for i in ids])},
        )
    await copy_timeline(tx, tl)
    keys = sorted(counts)  # a stable lock order across concurrent batches
    await _bulk(
        tx,
        """INSERT INTO {s}.counters (topic, dim, n, last_at) SELECT * FROM {unnest}
           ON CONFLICT (topic, dim) DO UPDATE SET n = {s}.counters.n + EXCLUDED.n,
               last_at = GREATEST({s}.counters.last_at, EXCLUDED.last_at)""",
        {
            "t": ("text", [k[0] for k in keys]),
            "d": ("text", [k[1] for k in keys]),
            "n": ("bigint", [counts[k] for k in keys]),
            "l": ("timestamptz", [last_at[k] for k in keys]),
        },
    )
    oo = sorted(opt_outs.items())
    await _bulk(
        tx,
        "INSERT INTO {s}.opt_outs (account_id, channel, at) SELECT * FROM {unnest} "
        "ON CONFLICT (account_id, channel) DO NOTHING",
        {
            "a": ("text", [k[0] for k, _ in oo]),
            "c": ("text", [k[1] for k, _ in oo]),
            "at": ("timestamptz", [v for _, v in oo]),
        },
    )
    await _bulk(
        tx,
        """INSERT INTO {s}.rejects (ce_id, account_id, source, batch_id, row_number, "column", value, reason,
               rejected_at) SELECT * FROM {unnest} ON CONFLICT (ce_id) DO NOTHING""",
        {
            "ce": ("text", [e.id for e, _ in rejects]),
            "a": ("text", [r.account_id for _, r in rejects]),
            "s": ("text", [r.source for _, r in rejects]),
            "b": ("text", [r.batch_id for _, r in rejects]),
            "n": ("integer", [r.row_number for _, r in rejects]),
            "c": ("text", [r.column for _, r in rejects]),
            "v": ("text", [r.value for _, r in rejects]),
            "r": ("text", [r.reason for _, r in rejects]),
            "at": ("timestamptz", [r.rejected_at for _, r in rejects]),
        },
    )
    cs = list(cases.values())
    await _bulk(
        tx,
        """INSERT INTO {s}.cases (case_id, account_id, reason, priority, detail, opened_at)
           SELECT * FROM {unnest} ON CONFLICT (case_id) DO NOTHING""",
        {
            "id": ("text", [c.case_id for c in cs]),
            "a": ("text", [c.account_id for c in cs]),
            "r": ("text", [c.reason for c in cs]),
            "p": ("text", [c.priority for c in cs]),
            "d": ("text", [c.detail for c in cs]),
            "at": ("timestamptz", [c.opened_at for c in cs]),
        },
    )
