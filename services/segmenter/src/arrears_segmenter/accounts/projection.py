"""The account projection as pure functions: fold one event into an `Account` (changed in place).

No I/O here: the handler loads the accounts of a whole batch at once, folds every event in order, and writes
the results back with one statement per table.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from arrears_shared import channels
from arrears_shared.events import AccountChanged, DeliveryStatus, Intent, MessageSent, ReplyReceived
from arrears_shared.money import RateTable, note_unpriced, packaged_rates

from ..aging import DEFAULT_BOUNDARIES, aging_bucket, days_past_due, local_date, zone_of
from ..segments import DEFAULT_BALANCE_BANDS, segment_of
from . import terms
from .account import CLOSED_STATUSES, Account

log = logging.getLogger(__name__)

DecisionRow = dict[str, Any]  # a row of segmenter.decisions


@dataclass(frozen=True)
class FoldContext:
    now: datetime
    boundaries: tuple[int, ...] = DEFAULT_BOUNDARIES
    bands: tuple[int, ...] = DEFAULT_BALANCE_BANDS
    paid_claim_pause_days: int = 7
    rates: RateTable = field(default_factory=packaged_rates)  # money thresholds: reporting currency
    # country -> template language of the notices (ARREARS_SEGMENTER_LOCALES_BY_COUNTRY; empty: none set)
    locales: Mapping[str, str] = field(default_factory=dict)

    def locale(self, country: str | None) -> str | None:
        """The language of an account's notices (`NoticeDue.locale`), None: the dispatchers' default."""
        return self.locales.get((country or "").upper())


def effective_status(source_status: str, hold: str | None) -> str:
    if source_status in CLOSED_STATUSES:
        return source_status
    return hold or source_status


def decision(
    account_id: str,
    ctx: FoldContext,
    outcome: str,
    rule_id: str,
    reason: str = "",
    *,
    step: int | None = None,
    cycle: int | None = None,
    channel: str | None = None,
    notice_id: str | None = None,
    defer_until: datetime | None = None,
) -> DecisionRow:
    return {
        "account_id": account_id,
        "step": step,
        "cycle": cycle,
        "channel": channel,
        "outcome": outcome,
        "rule_id": rule_id,
        "reason": reason,
        "notice_id": notice_id,
        "defer_until": defer_until,
        "at": ctx.now,
    }


def refresh_segment(acct: Account, ctx: FoldContext) -> None:
    """Recompute days past due, aging bucket and segment for `ctx.now` (debtor's calendar)."""
    dpd = days_past_due(acct.due_date, ctx.now, acct.timezone) if acct.due_date else 0
    bucket = aging_bucket(dpd, ctx.boundaries).value
    reporting = ctx.rates.to_reporting_minor(acct.balance_minor, acct.currency)
    if reporting is None:
        note_unpriced(acct.currency, "segmenter.balance_band")  # -> very_high
    seg = segment_of(
        reporting_minor=reporting,
        dpd=dpd,
        partial_payments=acct.partial_payments,
        broken_promises=acct.broken_promises,
        risk_override=acct.risk_override,
        bands=ctx.bands,
    )
    acct.days_past_due = dpd
    acct.aging_bucket = bucket
    acct.balance_band = seg.balance_band
    acct.history = seg.history
    acct.risk_score = seg.risk_score
    acct.segment = seg.label(bucket)


def apply_account_changed(acct: Account, ev: AccountChanged, ctx: FoldContext) -> list[DecisionRow]:
    if acct.known and acct.as_of is not None and ev.as_of < acct.as_of:
        log.info("stale account-changed ignored", extra={"as_of": ev.as_of.isoformat()})
        return []
    was_known = acct.known
    removed = ev.change == "removed"
    source_status = ev.status.value
    hold = acct.hold
    if ev.source in ("override", "payment") or source_status in CLOSED_STATUSES:
        hold = None  # an operator override or a payment ends a reply-driven hold
    if (
        ev.source == "payment"
        and acct.hold == "promise"
        and source_status not in CLOSED_STATUSES
        and terms.keeps_hold(acct.promise_plan, acct.settlement)
    ):
        hold = acct.hold  # ... but paying an instalment keeps a plan, and a settlement runs to its amount
    settled_now = terms.count_payment(acct.settlement, ev, ctx.now)
    now_active = not removed and ev.balance_minor > 0 and source_status not in CLOSED_STATUSES
    _start_cycle(acct, ev.due_date, now_active)
    partial = (
        was_known
        and ev.change == "payment"
        and 0 < ev.balance_minor < acct.balance_minor
        and source_status not in CLOSED_STATUSES
    )
    if partial:
        acct.partial_payments += 1
    _copy_sheet_facts(acct, ev)
    acct.source_status = source_status
    acct.hold = hold
    acct.status = effective_status(source_status, hold)
    acct.removed = removed
    acct.last_event_at = ctx.now
    if hold is None:
        acct.promise_hold_until = None
        acct.promise_plan = None
    if settled_now and acct.settlement is not None:
        st = acct.settlement
        return [
            decision(
                acct.account_id,
                ctx,
                "updated",
                "settlement.paid",
                f"settlement {st['offer_id']} paid ({st['paid_minor']} of {st['amount_minor']}): "
                "the sequence stops for good",
            )
        ]
    if partial:
        return [
            decision(acct.account_id, ctx, "updated", "payment.partial", f"balance now {ev.balance_minor}")
        ]
    return []


def _start_cycle(acct: Account, due_date: date | None, now_active: bool) -> None:
    """A first sighting starts cycle 0; an account that becomes active again (after being settled) or gets a
    new due date starts the next cycle from step 0. Reads the account as it was before the event."""
    if not acct.known:
        acct.cycle, acct.cycle_due_date, acct.last_step, acct.last_step_at = 0, due_date, 0, None
    elif now_active and (acct.settled() or due_date != acct.cycle_due_date):
        acct.cycle, acct.cycle_due_date, acct.last_step, acct.last_step_at = acct.cycle + 1, due_date, 0, None


def _copy_sheet_facts(acct: Account, ev: AccountChanged) -> None:
    """The facts the sheet (or a payment / override) states, as they are now."""
    _, tz_known = zone_of(ev.timezone)
    acct.known = True
    acct.change = ev.change
    acct.source = ev.source
    acct.source_row = ev.source_row
    acct.customer_name = ev.customer_name
    acct.balance_minor = ev.balance_minor
    acct.currency = ev.currency
    acct.due_date = ev.due_date
    acct.last_payment_date = ev.last_payment_date
    acct.last_payment_minor = ev.last_payment_minor
    acct.timezone = ev.timezone
    acct.timezone_unknown = not tz_known
    acct.country = ev.country
    acct.region = ev.region
    for channel, contact in ev.contact_points().items():
        acct.set_contact(channel, contact.address, contact.consent)
    acct.content_hash = ev.content_hash
    acct.as_of = ev.as_of


def apply_reply(acct: Account, ev: ReplyReceived, ctx: FoldContext) -> list[DecisionRow]:
    acct.last_event_at = ctx.now
    rule = f"reply.{ev.intent.value}"
    if ev.intent is Intent.OPT_OUT:
        acct.mark_opted_out(ev.channel)
        reason = f"{ev.channel} opt-out, effective immediately"
    elif ev.intent is Intent.WRONG_NUMBER and channels.kind_of(ev.channel) == "phone":
        acct.mark_address_invalid(ev.channel)
        reason = "reported wrong number"
    elif ev.intent is Intent.DISPUTE:
        acct.hold, acct.status = "dispute", effective_status(acct.source_status, "dispute")
        reason = "debt disputed: sequence paused"
    elif ev.intent in (Intent.PROMISE_TO_PAY, Intent.PAID_CLAIM) and acct.hold == "dispute":
        # a dispute is only lifted by a person (`resume_dunning`); a promise must not end it early
        acct.promise_amount_minor = ev.promise_amount_minor
        reason = "promise noted; the dispute hold stays until a person resolves it"
    elif ev.intent in (Intent.PROMISE_TO_PAY, Intent.PAID_CLAIM):
        until = ev.promise_date or (
            local_date(ctx.now, acct.timezone) + timedelta(days=ctx.paid_claim_pause_days)
        )
        hold_for_promise(acct, until, ev.promise_amount_minor)
        reason = f"sequence paused until {until.isoformat()}"
    else:
        return []
    return [decision(acct.account_id, ctx, "updated", rule, reason)]


def hold_for_promise(
    acct: Account,
    until: date,
    amount_minor: int | None,
    *,
    plan: dict[str, Any] | None = None,
    settlement: dict[str, Any] | None = None,
) -> None:
    """Reminders wait until the day after `until` (a promise in a reply, or one a person took), or after
    the last instalment day of a `plan`. A new promise replaces the plan and an unpaid settlement behind
    the hold before it (a settlement paid in full stays: the account is settled)."""
    acct.hold = "promise"
    acct.status = effective_status(acct.source_status, "promise")
    acct.promise_hold_until = until
    acct.promise_amount_minor = amount_minor
    acct.promise_plan = plan
    if settlement is not None or not terms.is_settled(acct.settlement):
        acct.settlement = settlement


def apply_message_sent(acct: Account, ev: MessageSent, ctx: FoldContext) -> list[DecisionRow]:
    if ev.status is not DeliveryStatus.FAILED or not ev.permanent:
        return []
    acct.mark_address_invalid(ev.channel)
    acct.last_event_at = ctx.now
    return [
        decision(
            acct.account_id,
            ctx,
            "updated",
            f"invalid_address.{ev.channel}",
            (ev.reason or "permanent delivery failure")[:200],
            channel=ev.channel,
            notice_id=ev.notice_id,
        )
    ]
