"""Customer confirmations: a payment receipt (a payment recorded through a payment webhook), a promise or a
payment-plan confirmation (a promise in a reply, or one a person recorded), a dispute acknowledgement (a
dispute in a reply, or one a person marked). Each is one `NoticeDue` with its own `purpose`, emitted once
per triggering fact (the notice id is derived from the event: the payment's ce_id, the reply id, the
override id) through `notices.send` (channel, gate, ledger). None of them is a dunning step: they never
count as one, never wake the sequence, and the dispatcher sends them after a payment in full."""

from __future__ import annotations

import hashlib

from arrears_shared.events import AccountChanged, Intent, NoticePurpose, OverrideRequested, ReplyReceived
from arrears_shared.stream.transaction import Transaction

from ..accounts.account import Account
from ..accounts.projection import DecisionRow, FoldContext
from ..deps import Deps
from . import notices


def receipt_number(trigger_id: str) -> str:
    """A short, stable receipt number the customer can quote (the same payment, the same number)."""
    return "R-" + hashlib.sha256(trigger_id.encode()).hexdigest()[:10].upper()


async def for_payment(
    tx: Transaction, acct: Account, ev: AccountChanged, ce_id: str, deps: Deps, ctx: FoldContext
) -> list[DecisionRow]:
    if ev.change != "payment" or "payment_receipt" not in deps.notify.confirmations:
        return []
    _, out = await notices.send(
        tx,
        acct,
        deps,
        ctx,
        purpose="payment_receipt",
        trigger_id=ce_id,
        about_amount_minor=ev.last_payment_minor,
        reference=receipt_number(ce_id),
    )
    return out


async def for_reply(
    tx: Transaction, acct: Account, ev: ReplyReceived, deps: Deps, ctx: FoldContext
) -> list[DecisionRow]:
    wanted = deps.notify.confirmations
    if ev.intent is Intent.PROMISE_TO_PAY and ev.promise_date is not None:
        purpose: NoticePurpose = "plan_confirmation" if ev.promise_plan_every else "promise_confirmation"
        if purpose not in wanted:
            return []
        _, out = await notices.send(
            tx,
            acct,
            deps,
            ctx,
            purpose=purpose,
            trigger_id=ev.reply_id,
            first_channel=ev.channel,
            about_amount_minor=ev.promise_amount_minor,
            about_date=ev.promise_date,
            plan_every=ev.promise_plan_every,
        )
        return out
    if ev.intent is Intent.DISPUTE and "dispute_acknowledgement" in wanted:
        _, out = await notices.send(
            tx,
            acct,
            deps,
            ctx,
            purpose="dispute_acknowledgement",
            trigger_id=ev.reply_id,
            first_channel=ev.channel,
        )
        return out
    return []


async def for_override(
    tx: Transaction, acct: Account, ev: OverrideRequested, deps: Deps, ctx: FoldContext
) -> list[DecisionRow]:
    """A promise a person recorded (or the debtor made in the portal: a promise, an instalment plan, an
    accepted settlement offer), a dispute a person marked: confirmed when the segmenter applied it. A plan
    (`promise_plan_every`) is confirmed as a `plan_confirmation`: its first instalment and how often."""
    wanted = deps.notify.confirmations
    plan: NoticePurpose = "plan_confirmation" if ev.promise_plan_every else "promise_confirmation"
    if ev.action == "record_promise" and plan in wanted:
        if acct.promise_hold_until != ev.promise_date and acct.hold != "dispute":
            return []  # rejected (no date, a date already past): nothing was recorded
        _, out = await notices.send(
            tx,
            acct,
            deps,
            ctx,
            purpose=plan,
            trigger_id=ev.override_id,
            about_amount_minor=ev.promise_amount_minor,
            about_date=ev.promise_date,
            plan_every=ev.promise_plan_every,
        )
        return out
    if ev.action == "mark_dispute" and "dispute_acknowledgement" in wanted and acct.hold == "dispute":
        _, out = await notices.send(
            tx, acct, deps, ctx, purpose="dispute_acknowledgement", trigger_id=ev.override_id
        )
        return out
    return []
