"""Failed-payment retries: a failed payment puts the account at risk and schedules retries; each retry asks
the customer to pay (a `payment_retry` notice with the way to pay); a payment clears it; the last retry
passing unpaid hands the payment to people (`exhausted`: escalation creates a recovery task).

"Retry" is the scheduled re-ask, not a new charge: the platform holds no card or mandate and no gateway API
key, and charging a debtor again without a fresh authorisation is not ours to do (docs: "Failed payments").
The count is of the retries done (`retry_count`) and of the failures the gateway reported (`failures`):

- failure 1 -> `at_risk`, retry 1 due `retry_after` later;
- a due retry n <= `retries_max` -> notice n, retry n+1 (or the end of the last retry's window) due
  `retry_after` later;
- the last retry's window passes unpaid, or the gateway reports a failure after the last retry ->
  `exhausted` (no timer; a recovery task for people);
- a payment (a payment webhook, a balance paid down to 0, a paid / closed / removed account) -> `cleared`,
  pending retries cancelled.

State lives in `segmenter.payment_retries` (durable timers: `next_at`, taken with `FOR UPDATE SKIP LOCKED`
like the dunning timers, so replicas and restarts fire each retry once); each change is published as
`PaymentRetryChanged` on `account-changed` (ce_id derived from the payment and the change) for escalation,
the console and anyone downstream. A retry notice's id is `<account>:payment_retry:<provider>:<payment>:<n>`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from arrears_shared.events import AccountChanged, PaymentFailed, PaymentRetryChanged
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from ..accounts.account import Account
from ..accounts.projection import DecisionRow, FoldContext, decision
from ..accounts.store import insert_decisions, load_locked
from ..deps import Deps
from . import notices
from .metrics import PAYMENT_RETRIES
from .models import payment_retries

OPEN = ("at_risk", "exhausted")


def _changed(row: Any, status: str, at_risk: bool, now: datetime, reason: str = "") -> PaymentRetryChanged:
    return PaymentRetryChanged(
        account_id=row["account_id"],
        provider=row["provider"],
        payment_id=row["payment_id"],
        status=status,  # type: ignore[arg-type]
        at_risk=at_risk,
        failures=row["failures"],
        retry_count=row["retry_count"],
        retries_max=row["retries_max"],
        next_retry_at=row["next_at"],
        amount_minor=row["amount_minor"],
        currency=row["currency"],
        reason=reason[:200],
        changed_at=now,
    )


def _emit(
    tx: Transaction, row: Any, status: str, at_risk: bool, now: datetime, tag: str, why: str = ""
) -> None:
    ev = _changed(row, status, at_risk, now, why)
    PAYMENT_RETRIES.labels(status).inc()
    tx.emit(ev, id=f"payment-retry:{row['provider']}:{row['payment_id']}:{status}:{tag}", time=now)


async def on_failed(tx: Transaction, ev: PaymentFailed, deps: Deps, ctx: FoldContext) -> list[DecisionRow]:
    """A failure the gateway reported: count it; the first puts the account at risk and schedules retry 1;
    one after the last retry exhausts the retries. The same failure id twice counts once."""
    conn, now, cfg = tx.conn, ctx.now, deps.notify
    key = (ev.account_id, ev.provider, ev.payment_id)
    row = (
        (
            await conn.execute(
                select(payment_retries)
                .where(
                    payment_retries.c.account_id == key[0],
                    payment_retries.c.provider == key[1],
                    payment_retries.c.payment_id == key[2],
                )
                .with_for_update()
            )
        )
        .mappings()
        .first()
    )
    why = ev.failure_code or ev.failure_message or "failed"
    if row is not None and ev.failure_id in row["failure_ids"]:
        return []
    if row is None or row["state"] == "cleared":
        values: dict[str, Any] = {
            "account_id": key[0],
            "provider": key[1],
            "payment_id": key[2],
            "state": "at_risk",
            "failures": (row["failures"] if row else 0) + 1,
            "failure_ids": [*(row["failure_ids"] if row else []), ev.failure_id],
            "retry_count": 0,
            "retries_max": cfg.retries_max,
            "next_at": ev.failed_at + cfg.retry_after,
            "amount_minor": ev.amount_minor,
            "currency": ev.currency,
            "first_failed_at": ev.failed_at,
            "last_failed_at": ev.failed_at,
            "reason": why,
            "updated_at": now,
        }
        await conn.execute(
            insert(payment_retries)
            .values(**values)
            .on_conflict_do_update(index_elements=list(payment_retries.primary_key.columns), set_=values)
        )
        _emit(tx, values, "at_risk", True, now, ev.failure_id, why)
        note = f"payment {ev.payment_id} failed ({why}): retry 1 of {cfg.retries_max} due {values['next_at']:%Y-%m-%d %H:%M} UTC"
        return [decision(ev.account_id, ctx, "updated", "payment_retry.at_risk", note)]
    values = dict(row)
    values.update(
        failures=row["failures"] + 1,
        failure_ids=[*row["failure_ids"], ev.failure_id],
        last_failed_at=max(row["last_failed_at"], ev.failed_at),
        reason=why,
        updated_at=now,
    )
    status, note = "at_risk", f"payment {ev.payment_id} failed again ({why})"
    if row["state"] == "at_risk" and row["retry_count"] >= row["retries_max"]:
        values.update(state="exhausted", next_at=None)
        status, note = "exhausted", f"{note} after the last retry: handed to people"
    await _update(tx, values)
    _emit(tx, values, status, True, now, ev.failure_id, why)
    return [decision(ev.account_id, ctx, "updated", f"payment_retry.{status}", note)]


async def _update(tx: Transaction, values: dict[str, Any]) -> None:
    c = payment_retries.c
    await tx.conn.execute(
        update(payment_retries)
        .where(
            c.account_id == values["account_id"],
            c.provider == values["provider"],
            c.payment_id == values["payment_id"],
        )
        .values(**{k: v for k, v in values.items() if k not in ("account_id", "provider", "payment_id")})
    )


def pays(ev: AccountChanged) -> bool:
    """Whether this account change is a payment that clears a failed one (or nothing is left to pay)."""
    return ev.change == "payment" or ev.stop_reason is not None


async def on_paid(tx: Transaction, ev: AccountChanged, ce_id: str, ctx: FoldContext) -> list[DecisionRow]:
    """A payment arrived: every open retry of the account is cleared (pending retries cancelled)."""
    rows = (
        (
            await tx.conn.execute(
                update(payment_retries)
                .where(payment_retries.c.account_id == ev.account_id, payment_retries.c.state.in_(OPEN))
                .values(state="cleared", next_at=None, updated_at=ctx.now)
                .returning(*payment_retries.c)
            )
        )
        .mappings()
        .all()
    )
    why = "payment received" if ev.change == "payment" else (ev.stop_reason or "")
    for row in rows:
        _emit(tx, row, "cleared", False, ctx.now, ce_id, why)
    return [
        decision(ev.account_id, ctx, "updated", "payment_retry.cleared", f"payment {r['payment_id']}: {why}")
        for r in rows
    ]


async def fire_due(tx: Transaction, deps: Deps, now: datetime) -> int:
    """Retries that are due: ask the customer to pay again, or hand the payment to people after the last.
    Replicas share them through SKIP LOCKED; returns how many were handled."""
    conn, cfg = tx.conn, deps.notify
    c = payment_retries.c
    due = (
        (
            await conn.execute(
                select(payment_retries)
                .where(c.state == "at_risk", c.next_at <= now)
                .order_by(c.next_at)
                .limit(deps.timer_batch)
                .with_for_update(skip_locked=True)
            )
        )
        .mappings()
        .all()
    )
    if not due:
        return 0
    ctx = deps.fold_context(now)
    accts = await load_locked(conn, {r["account_id"] for r in due})
    out: list[DecisionRow] = []
    for row in due:
        values = dict(row) | {"updated_at": now}
        acct = accts.get(row["account_id"])
        if acct is not None and acct.settled():
            values.update(state="cleared", next_at=None)
            await _update(tx, values)
            _emit(tx, values, "cleared", False, now, "settled", "nothing left to pay")
            continue
        if row["retry_count"] >= row["retries_max"]:
            values.update(state="exhausted", next_at=None)
            await _update(tx, values)
            why = f"{row['retries_max']} retries passed unpaid"
            _emit(tx, values, "exhausted", True, now, "window", why)
            out.append(decision(row["account_id"], ctx, "updated", "payment_retry.exhausted", why))
            continue
        n = row["retry_count"] + 1
        values.update(retry_count=n, next_at=now + cfg.retry_after)
        await _update(tx, values)
        out += await _ask(tx, acct, row, n, deps, ctx)
        _emit(tx, values, "retry_sent", True, now, str(n), f"retry {n} of {row['retries_max']}")
    await insert_decisions(conn, out)
    return len(due)


async def _ask(
    tx: Transaction, acct: Account | None, row: Any, n: int, deps: Deps, ctx: FoldContext
) -> list[DecisionRow]:
    """Retry n's notice, unless the account may not be asked for money now (a dispute, a person's stop)."""
    aid = row["account_id"]
    if acct is None:
        return [
            decision(aid, ctx, "suppressed", "payment_retry.unknown_account", f"retry {n}: unknown account")
        ]
    if acct.hold == "dispute" or acct.do_not_contact or acct.paused_by is not None:
        why = "disputed" if acct.hold == "dispute" else "do-not-contact" if acct.do_not_contact else "paused"
        return [decision(aid, ctx, "suppressed", f"payment_retry.{why}", f"retry {n}: account {why}")]
    _, found = await notices.send(
        tx,
        acct,
        deps,
        ctx,
        purpose="payment_retry",
        trigger_id=f"{row['provider']}:{row['payment_id']}:{n}",
        expires_after=deps.notify.retry_after,
        about_amount_minor=row["amount_minor"],
        pay_with=deps.notify.way_to_pay(),
        retry=n,
        retries_max=row["retries_max"],
    )
    return found
