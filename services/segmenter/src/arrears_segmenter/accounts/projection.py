"""The account projection as pure functions: fold one event into an account row (a dict of its columns).

No I/O here: the handler loads the rows of a whole batch at once, folds every event in order, and writes
the results back with one statement per table.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from arrears_shared.events import (
    AccountChanged,
    AccountStatus,
    Channel,
    DeliveryStatus,
    Intent,
    MessageSent,
    ReplyReceived,
)
from arrears_shared.money import RateTable, note_unpriced, packaged_rates

from ..aging import DEFAULT_BOUNDARIES, aging_bucket, days_past_due, local_date, local_midnight, zone_of
from ..segments import DEFAULT_BALANCE_BANDS, segment_of

log = logging.getLogger(__name__)

Row = dict[str, Any]
CLOSED_STATUSES = {AccountStatus.PAID.value, AccountStatus.CLOSED.value}


@dataclass(frozen=True)
class FoldContext:
    now: datetime
    boundaries: tuple[int, ...] = DEFAULT_BOUNDARIES
    bands: tuple[int, ...] = DEFAULT_BALANCE_BANDS
    paid_claim_pause_days: int = 7
    rates: RateTable = field(default_factory=packaged_rates)  # money thresholds: reporting currency


def new_row(account_id: str, now: datetime) -> Row:
    """A placeholder (a reply can arrive before the account): unknown, never dunned."""
    return {
        "account_id": account_id,
        "known": False,
        "change": None,
        "source": None,
        "source_row": None,
        "customer_name": "",
        "phone": None,
        "email": None,
        "balance_minor": 0,
        "currency": None,  # set by the first account-changed
        "due_date": None,
        "last_payment_date": None,
        "last_payment_minor": None,
        "timezone": None,
        "timezone_unknown": True,
        "country": None,
        "region": None,
        "sms_consent": False,
        "email_consent": False,
        "status": "open",
        "source_status": "open",
        "hold": None,
        "removed": False,
        "content_hash": None,
        "as_of": None,
        "sms_opt_out": False,
        "email_opt_out": False,
        "do_not_contact": False,
        "sms_invalid": False,
        "email_invalid": False,
        "paused_until": None,
        "promise_amount_minor": None,
        "cycle": 0,
        "cycle_due_date": None,
        "last_step": 0,
        "last_step_at": None,
        "days_past_due": 0,
        "aging_bucket": "current",
        "first_seen_at": now,
        "last_event_at": now,
        "complex": False,
        "risk_score": 0,
        "risk_override": None,
        "partial_payments": 0,
        "broken_promises": 0,
        "balance_band": "low",
        "history": "clean",
        "segment": "",
        "paused_by": None,
        "pause_until": None,
        "pause_reason": None,
        "channel_preference": None,
        "sms_do_not_contact": False,
        "email_do_not_contact": False,
        "send_now": None,
    }


def settled(row: Row) -> bool:
    return bool(row["removed"] or row["balance_minor"] <= 0 or row["source_status"] in CLOSED_STATUSES)


def effective_status(source_status: str, hold: str | None) -> str:
    if source_status in CLOSED_STATUSES:
        return source_status
    return hold or source_status


def decision(row: Row, ctx: FoldContext, outcome: str, rule_id: str, reason: str = "", **kw: Any) -> Row:
    return {
        "account_id": row["account_id"],
        "step": kw.get("step"),
        "cycle": kw.get("cycle"),
        "channel": kw.get("channel"),
        "outcome": outcome,
        "rule_id": rule_id,
        "reason": reason,
        "notice_id": kw.get("notice_id"),
        "defer_until": kw.get("defer_until"),
        "at": ctx.now,
    }


def refresh_segment(row: Row, ctx: FoldContext) -> None:
    """Recompute days past due, aging bucket and segment for `ctx.now` (debtor's calendar)."""
    dpd = days_past_due(row["due_date"], ctx.now, row["timezone"]) if row["due_date"] else 0
    bucket = aging_bucket(dpd, ctx.boundaries).value
    reporting = ctx.rates.to_reporting_minor(row["balance_minor"], row["currency"])
    if reporting is None:
        note_unpriced(row["currency"], "segmenter.balance_band")  # -> very_high
    seg = segment_of(
        reporting_minor=reporting,
        dpd=dpd,
        partial_payments=row["partial_payments"],
        broken_promises=row["broken_promises"],
        risk_override=row["risk_override"],
        bands=ctx.bands,
    )
    row.update(
        days_past_due=dpd,
        aging_bucket=bucket,
        balance_band=seg.balance_band,
        history=seg.history,
        risk_score=seg.risk_score,
        segment=seg.label(bucket),
    )


def apply_account_changed(row: Row, ev: AccountChanged, ctx: FoldContext) -> list[Row]:
    if row["known"] and row["as_of"] is not None and ev.as_of < row["as_of"]:
        log.info("stale account-changed ignored", extra={"as_of": ev.as_of.isoformat()})
        return []
    prev = dict(row)
    _, tz_known = zone_of(ev.timezone)
    removed = ev.change == "removed"
    source_status = ev.status.value
    hold = prev["hold"]
    if ev.source in ("override", "payment") or source_status in CLOSED_STATUSES:
        hold = None  # an operator override or a payment ends a reply-driven hold
    now_active = not removed and ev.balance_minor > 0 and source_status not in CLOSED_STATUSES
    if not prev["known"]:
        row.update(cycle=0, cycle_due_date=ev.due_date, last_step=0, last_step_at=None)
    elif now_active and (settled(prev) or ev.due_date != prev["cycle_due_date"]):
        row.update(cycle=prev["cycle"] + 1, cycle_due_date=ev.due_date, last_step=0, last_step_at=None)
    partial = (
        prev["known"]
        and ev.change == "payment"
        and 0 < ev.balance_minor < prev["balance_minor"]
        and source_status not in CLOSED_STATUSES
    )
    row.update(
        known=True,
        change=ev.change,
        source=ev.source,
        source_row=ev.source_row,
        customer_name=ev.customer_name,
        phone=ev.phone,
        email=ev.email,
        balance_minor=ev.balance_minor,
        currency=ev.currency,
        due_date=ev.due_date,
        last_payment_date=ev.last_payment_date,
        last_payment_minor=ev.last_payment_minor,
        timezone=ev.timezone,
        timezone_unknown=not tz_known,
        country=ev.country,
        region=ev.region,
        sms_consent=ev.sms_consent,
        email_consent=ev.email_consent,
        source_status=source_status,
        hold=hold,
        status=effective_status(source_status, hold),
        removed=removed,
        content_hash=ev.content_hash,
        as_of=ev.as_of,
        last_event_at=ctx.now,
        partial_payments=prev["partial_payments"] + (1 if partial else 0),
    )
    if prev["known"] and ev.phone != prev["phone"]:
        row["sms_invalid"] = False
    if prev["known"] and ev.email != prev["email"]:
        row["email_invalid"] = False
    if hold is None:
        row["paused_until"] = None
    out = []
    if partial:
        out.append(decision(row, ctx, "updated", "payment.partial", f"balance now {ev.balance_minor}"))
    return out


def apply_reply(row: Row, ev: ReplyReceived, ctx: FoldContext) -> list[Row]:
    row["last_event_at"] = ctx.now
    rule = f"reply.{ev.intent.value}"
    if ev.intent is Intent.OPT_OUT:
        row[f"{ev.channel.value}_opt_out"] = True
        reason = f"{ev.channel.value} opt-out, effective immediately"
    elif ev.intent is Intent.WRONG_NUMBER and ev.channel is Channel.SMS:
        row["sms_invalid"] = True
        reason = "reported wrong number"
    elif ev.intent is Intent.DISPUTE:
        row.update(hold="dispute", status=effective_status(row["source_status"], "dispute"))
        reason = "debt disputed: sequence paused"
    elif ev.intent in (Intent.PROMISE_TO_PAY, Intent.PAID_CLAIM) and row["hold"] == "dispute":
        # a dispute is only lifted by a person (`resume_dunning`); a promise must not end it early
        row["promise_amount_minor"] = ev.promise_amount_minor
        reason = "promise noted; the dispute hold stays until a person resolves it"
    elif ev.intent in (Intent.PROMISE_TO_PAY, Intent.PAID_CLAIM):
        until = ev.promise_date or (
            local_date(ctx.now, row["timezone"]) + timedelta(days=ctx.paid_claim_pause_days)
        )
        row.update(
            hold="promise",
            status=effective_status(row["source_status"], "promise"),
            paused_until=until,
            promise_amount_minor=ev.promise_amount_minor,
        )
        reason = f"sequence paused until {until.isoformat()}"
    else:
        return []
    return [decision(row, ctx, "updated", rule, reason)]


def apply_message_sent(row: Row, ev: MessageSent, ctx: FoldContext) -> list[Row]:
    if ev.status is not DeliveryStatus.FAILED or not ev.permanent:
        return []
    row[f"{ev.channel.value}_invalid"] = True
    row["last_event_at"] = ctx.now
    return [
        decision(
            row,
            ctx,
            "updated",
            f"invalid_address.{ev.channel.value}",
            (ev.reason or "permanent delivery failure")[:200],
            channel=ev.channel.value,
            notice_id=ev.notice_id,
        )
    ]


def promise_resume_at(row: Mapping[str, Any]) -> datetime | None:
    """First instant after a promise's date (local midnight of the next day), if a promise is active."""
    if row["hold"] == "promise" and row["paused_until"] is not None:
        return local_midnight(row["paused_until"] + timedelta(days=1), row["timezone"])
    return None


def paused_until(row: Mapping[str, Any]) -> datetime | None:
    """End of a person's timed pause still in force (None: no timed pause). An indefinite pause is a stop
    condition instead (`manual_pause`, see policy.planner.stop_reason)."""
    if row["paused_by"] is not None and row["pause_until"] is not None:
        return row["pause_until"]  # type: ignore[no-any-return]
    return None


def preferred_channels(row: Row) -> list[Channel]:
    """Channels in the order a person set (`set_channel_preference`); empty = the policy step's own."""
    return [Channel(c) for c in (row["channel_preference"] or "").split(",") if c]


def send_now_of(row: Row, step: int | None = None, cycle: int | None = None) -> dict[str, Any] | None:
    """The pending `send_now` override of the account's current cycle (optionally: for that step), if any."""
    so = row["send_now"]
    if not so or so["cycle"] != row["cycle"] or so["step"] <= row["last_step"]:
        return None
    if step is not None and (so["step"], so["cycle"]) != (step, cycle):
        return None
    return so  # type: ignore[no-any-return]
