"""Event and timer triggers -> escalation rules (orchestration across cases, tasks and promises)."""

from __future__ import annotations

from datetime import datetime

from arrears_shared.events import (
    AccountChanged,
    AccountStatus,
    DeliveryStatus,
    Intent,
    MessageSent,
    PaymentFailed,
    PaymentRetryChanged,
    ReplyReceived,
    Tier,
)
from arrears_shared.money import format_minor
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..deps import Deps
from ..promises.service import due_broken, on_payment, record_promise
from ..rules.flows import escalate
from ..rules.service import Facts
from ..tasks.service import complete_task, task_id_for
from .models import timers
from .service import NO_RESPONSE


async def cancel_timers(conn: AsyncConnection, account_id: str, reason: str, now: datetime) -> int:
    res = await conn.execute(
        update(timers)
        .where(timers.c.account_id == account_id, timers.c.state == "pending")
        .values(state="cancelled", reason=reason, updated_at=now)
    )
    return res.rowcount or 0


async def on_message_sent(tx: Transaction, ev: MessageSent, deps: Deps, now: datetime) -> None:
    if ev.status is DeliveryStatus.FAILED and ev.permanent:
        await escalate(
            tx,
            deps,
            "delivery_failed",
            Facts(channel=ev.channel),
            account_id=ev.account_id,
            trigger_id=f"{ev.notice_id}:failed",
            detail=f"{ev.channel} notice {ev.notice_id} failed for good: {ev.reason or ''}"[:500],
            now=now,
        )
        return
    if ev.status is not DeliveryStatus.SENT or ev.tier is not Tier.FINAL:
        return
    await tx.conn.execute(
        insert(timers)
        .values(
            account_id=ev.account_id,
            kind=NO_RESPONSE,
            trigger_id=ev.notice_id,
            due_at=ev.sent_at + deps.no_response_after,
            state="pending",
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing()
    )


REVIEW_TASK_KINDS = ("review_opt_out", "read_reply")


async def on_reply(tx: Transaction, ev: ReplyReceived, deps: Deps, now: datetime) -> None:
    if ev.reviewed_by is not None:
        # a person decided about a reply: the task that asked them to read it is done
        for kind in REVIEW_TASK_KINDS:
            await complete_task(
                tx.conn,
                task_id_for(ev.account_id, kind, ev.reply_id),
                f"{ev.reviewed_by} marked the reply {ev.intent.value}",
                now,
            )
    await cancel_timers(tx.conn, ev.account_id, f"reply:{ev.intent.value}", now)
    if ev.intent is Intent.PROMISE_TO_PAY:
        await record_promise(tx.conn, ev)
    await escalate(
        tx,
        deps,
        "reply",
        Facts(
            intent=ev.intent.value,
            confidence=ev.confidence,
            channel=ev.channel,
            needs_review=ev.needs_review,
            possible_opt_out=ev.possible_opt_out,
        ),
        account_id=ev.account_id,
        trigger_id=ev.reply_id,
        detail=ev.summary(),
        now=now,
    )


async def on_account_changed(tx: Transaction, ev: AccountChanged, deps: Deps, now: datetime) -> None:
    await on_payment(tx.conn, ev, deps, now)
    if (
        ev.change == "removed"
        or ev.balance_minor <= 0
        or ev.status in (AccountStatus.PAID, AccountStatus.CLOSED)
    ):
        await cancel_timers(tx.conn, ev.account_id, "account_settled", now)
        return
    facts = Facts(balance_minor=ev.balance_minor, currency=ev.currency)
    detail = f"balance {format_minor(ev.balance_minor, ev.currency)}"
    if facts.unpriced(deps.rates):
        detail += f" (no {deps.rates.reporting_currency} rate for {ev.currency}: counted as high value)"
    await escalate(
        tx,
        deps,
        "account_changed",
        facts,
        account_id=ev.account_id,
        trigger_id=f"cycle:{ev.due_date.isoformat()}",
        detail=detail,
        now=now,
    )


async def on_payment_failed(tx: Transaction, ev: PaymentFailed, deps: Deps, now: datetime) -> None:
    """A payment webhook reported a failed payment: the `payment_failed` rules (default: a `failed_payment`
    case and a follow-up task). Idempotent per failed attempt; while such a case is open, no second one."""
    amount = (
        f"{format_minor(ev.amount_minor, ev.currency)} "
        if ev.amount_minor is not None and ev.currency
        else ""
    )
    why = ev.failure_code or ev.failure_message or "no reason given"
    await escalate(
        tx,
        deps,
        "payment_failed",
        Facts(balance_minor=ev.balance_minor, currency=ev.currency),
        account_id=ev.account_id,
        trigger_id=f"payment-failed:{ev.provider}:{ev.failure_id}",
        detail=f"{ev.provider} payment {ev.payment_id} {amount}failed: {why}"[:500],
        now=now,
    )


async def on_payment_retry_changed(
    tx: Transaction, ev: PaymentRetryChanged, deps: Deps, now: datetime
) -> None:
    """The segmenter's failed-payment retries: after the last retry failed (`exhausted`) the
    `payment_retries_exhausted` rules (default: a `payment_recovery` task for the recovery team), once per
    payment; a payment after that (`cleared`) completes that task. The other changes are on the timeline
    only."""
    trigger_id = f"payment-retries:{ev.provider}:{ev.payment_id}"
    if ev.status == "cleared":  # paid after all: the recovery task, if any, has nothing left to do
        await complete_task(
            tx.conn, task_id_for(ev.account_id, "payment_recovery", trigger_id), "payment received", now
        )
        return
    if ev.status != "exhausted":
        return
    amount = (
        f"{format_minor(ev.amount_minor, ev.currency)} "
        if ev.amount_minor is not None and ev.currency
        else ""
    )
    await escalate(
        tx,
        deps,
        "payment_retries_exhausted",
        Facts(currency=ev.currency),
        account_id=ev.account_id,
        trigger_id=trigger_id,
        detail=f"{ev.provider} payment {ev.payment_id} {amount}still unpaid after {ev.retry_count} "
        f"retries ({ev.failures} failed attempts): {ev.reason}"[:500],
        now=now,
    )


async def fire_due(conn: AsyncConnection, tx: Transaction, deps: Deps, now: datetime) -> int:
    """No-response timers that are due, and promises past due date + grace. Replicas share via SKIP LOCKED."""
    rows = (
        await conn.execute(
            select(timers)
            .where(timers.c.state == "pending", timers.c.due_at <= now)
            .order_by(timers.c.due_at)
            .limit(deps.timer_batch)
            .with_for_update(skip_locked=True)
        )
    ).all()
    for t in rows:
        await escalate(
            tx,
            deps,
            "no_response",
            Facts(),
            account_id=t.account_id,
            trigger_id=t.trigger_id,
            detail=f"no reply since the final notice {t.trigger_id}",
            now=now,
        )
        await conn.execute(update(timers).where(timers.c.id == t.id).values(state="fired", updated_at=now))
    grace = min(
        (r.conditions.grace_days for r in deps.rules.rules if r.trigger == "promise_broken" and r.enabled),
        default=1,
    )
    broken = await due_broken(conn, now.date(), grace, deps.timer_batch, now)
    for p in broken:
        await escalate(
            tx,
            deps,
            "promise_broken",
            Facts(),
            account_id=p.account_id,
            trigger_id=f"promise:{p.promise_id}",
            detail=f"promise to pay by {p.due_date.isoformat()} not kept",
            now=now,
            promise_id=p.promise_id,
        )
    return len(rows) + len(broken)
