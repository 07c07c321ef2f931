"""Recording payments and keeping them consistent with later sheet runs.

A payment, in one transaction (serialised with ingest runs by the snapshot lock):
  webhook delivery claimed (a replayed delivery id is refused) -> payment row keyed by
  (provider, payment id) (the same payment announced by two events is applied once) -> the account's
  snapshot updated (balance - amount, last payment, status `paid` when nothing is left) -> `account-changed`
  (`change = "payment"`) in the outbox. An unknown account or a currency mismatch is recorded as an ingest
  reject (source `payment`) and published as `ingest-rejected`: the money is not lost from view.

The sheet stays the master, but it usually learns of a payment later than we do. Until then the sheet row
still shows the old balance: its cells are unchanged, so runs skip it and the paid balance stands. When
the row changes for another reason while its Balance still equals the balance the payment was applied to,
the pending payments are applied to it again (no flip back to the old balance); once the sheet's Balance
differs from that figure, the sheet has booked the payment and its value wins (the payment is reconciled).

A failed payment (Stripe `payment_intent.payment_failed` / `charge.failed`, generic `payment.failed`)
changes no balance: it is recorded once per failed attempt (`payment_failures`) and published as
`PaymentFailed` on `account-changed`, in the same transaction; escalation opens a `failed_payment` case.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from arrears_shared.events import AccountStatus, PaymentFailed
from arrears_shared.stream.transaction import Transaction
from arrears_shared.vault.keys import vault
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..snapshot import service as snapshots
from ..validation import AccountRow, Rejection
from ..validation import parse as p
from ..validation.rows import content_hash
from .models import (
    GENERIC_FAILURE_TYPES,
    GENERIC_PAYMENT_TYPES,
    STRIPE_FAILURE_TYPES,
    STRIPE_PAYMENT_TYPES,
    GenericPayment,
    GenericPaymentEvent,
    GenericPaymentFailure,
    Payment,
    PaymentFailure,
    PaymentResult,
    StripeEvent,
)


class PaymentDataError(ValueError):
    """The webhook is authentic but its payment data cannot be read (answered 400)."""


def _stripe_account(obj: dict[str, Any]) -> str | None:
    meta = obj.get("metadata") or {}
    for key in ("account_id", "arrears_account_id", "accountId"):
        if isinstance(meta, dict) and isinstance(meta.get(key), str) and meta[key].strip():
            return str(meta[key]).strip()
    ref = obj.get("client_reference_id")
    return ref.strip() if isinstance(ref, str) and ref.strip() else None


def parse_stripe(event: StripeEvent) -> Payment | None:
    """A Payment from a Stripe event, None for event types that are not a received payment.

    The payment id is the PaymentIntent id where there is one, so `charge.succeeded` and
    `payment_intent.succeeded` for the same money are one payment."""
    if event.type not in STRIPE_PAYMENT_TYPES:
        return None
    obj = event.data.get("object")
    if not isinstance(obj, dict):
        raise PaymentDataError("data.object is missing")
    if event.type == "checkout.session.completed" and obj.get("payment_status") != "paid":
        return None
    amount = {
        "payment_intent.succeeded": obj.get("amount_received", obj.get("amount")),
        "charge.succeeded": obj.get("amount_captured", obj.get("amount")),
        "checkout.session.completed": obj.get("amount_total"),
    }[event.type]
    pi = obj.get("payment_intent")
    payment_id = pi if isinstance(pi, str) and pi else obj.get("id")
    account_id = _stripe_account(obj)
    currency = obj.get("currency")
    if not isinstance(payment_id, str) or not payment_id:
        raise PaymentDataError("payment object has no id")
    if account_id is None:
        raise PaymentDataError("metadata.account_id (or client_reference_id) is missing")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise PaymentDataError("amount is missing or not a positive integer")
    if not isinstance(currency, str) or len(currency) != 3:
        raise PaymentDataError("currency is missing")
    created = obj.get("created", event.created)
    paid_at = datetime.fromtimestamp(created, UTC) if isinstance(created, int) else datetime.now(UTC)
    try:
        return Payment(
            provider="stripe",
            payment_id=payment_id,
            event_id=event.id,
            account_id=account_id[:64],
            amount_minor=amount,
            currency=currency.upper(),
            paid_at=paid_at,
        )
    except ValueError as e:
        raise PaymentDataError(str(e)) from None


def _text(value: Any, limit: int) -> str | None:
    return value.strip()[:limit] or None if isinstance(value, str) else None


def parse_stripe_failure(event: StripeEvent) -> PaymentFailure | None:
    """A PaymentFailure from `payment_intent.payment_failed` or `charge.failed`, None for other types.

    The payment id is the PaymentIntent id where there is one; the failed attempt is the charge (so the two
    events Stripe sends for one declined charge are one failure, while a later retry of the same
    PaymentIntent that fails again is a new one). No charge (e.g. authentication never completed): the
    event id stands for the attempt."""
    if event.type not in STRIPE_FAILURE_TYPES:
        return None
    obj = event.data.get("object")
    if not isinstance(obj, dict):
        raise PaymentDataError("data.object is missing")
    raw_error = obj.get("last_payment_error")
    error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
    if event.type == "charge.failed":
        pi, charge = obj.get("payment_intent"), obj.get("id")
        code = _text(obj.get("failure_code"), 100)
        message = _text(obj.get("failure_message"), 500)
    else:
        pi = obj.get("id")
        charge = obj.get("latest_charge") or error.get("charge")
        code = _text(error.get("decline_code") or error.get("code"), 100)
        message = _text(error.get("message"), 500)
    if isinstance(charge, dict):  # expanded
        charge = charge.get("id")
    payment_id = pi if isinstance(pi, str) and pi else obj.get("id")
    if not isinstance(payment_id, str) or not payment_id:
        raise PaymentDataError("payment object has no id")
    account_id = _stripe_account(obj)
    if account_id is None:
        raise PaymentDataError("metadata.account_id (or client_reference_id) is missing")
    amount = obj.get("amount")
    currency = obj.get("currency")
    created = obj.get("created", event.created)
    try:
        return PaymentFailure(
            provider="stripe",
            payment_id=payment_id,
            failure_id=charge if isinstance(charge, str) and charge else event.id,
            event_id=event.id,
            account_id=account_id[:64],
            amount_minor=amount
            if isinstance(amount, int) and not isinstance(amount, bool) and amount > 0
            else None,
            currency=currency.upper() if isinstance(currency, str) and len(currency) == 3 else None,
            failure_code=code,
            failure_message=message or "",
            failed_at=datetime.fromtimestamp(created, UTC) if isinstance(created, int) else datetime.now(UTC),
        )
    except ValueError as e:
        raise PaymentDataError(str(e)) from None


def parse_generic_failure(delivery_id: str, event: GenericPaymentEvent) -> PaymentFailure | None:
    """A PaymentFailure from a generic `payment.failed`, None for other types. The failed attempt is the
    payment id (a gateway that retries a payment sends a new one)."""
    if event.type not in GENERIC_FAILURE_TYPES:
        return None
    try:
        data = GenericPaymentFailure.model_validate(event.data)
    except ValueError as e:
        raise PaymentDataError(str(e)) from None
    currency = data.currency.upper() if data.currency else None
    minor = data.amount_minor
    if data.amount is not None and currency is not None:
        try:
            minor = p.to_minor(data.amount, currency)
        except p.CellError as e:
            raise PaymentDataError(f"amount: {e}") from None
    return PaymentFailure(
        provider="generic",
        payment_id=data.payment_id,
        failure_id=data.payment_id,
        event_id=delivery_id,
        account_id=data.account_id,
        amount_minor=minor,
        currency=currency,
        failure_code=_text(data.failure_code, 100),
        failure_message=_text(data.failure_message, 500) or "",
        failed_at=data.failed_at or datetime.now(UTC),
    )


def parse_generic(delivery_id: str, event: GenericPaymentEvent) -> Payment | None:
    if event.type not in GENERIC_PAYMENT_TYPES:
        return None
    try:
        data = GenericPayment.model_validate(event.data)
    except ValueError as e:
        raise PaymentDataError(str(e)) from None
    currency = data.currency.upper()
    if data.amount_minor is not None:
        minor = data.amount_minor
    else:
        assert data.amount is not None
        try:
            minor = p.to_minor(data.amount, currency)
        except p.CellError as e:
            raise PaymentDataError(f"amount: {e}") from None
    return Payment(
        provider="generic",
        payment_id=data.payment_id,
        event_id=delivery_id,
        account_id=data.account_id,
        amount_minor=minor,
        currency=currency,
        paid_at=data.paid_at or datetime.now(UTC),
    )


async def claim_delivery(conn: AsyncConnection, schema: str, provider: str, delivery_id: str) -> bool:
    """Record a webhook delivery id; False if it was processed before (a replay or a provider retry)."""
    row = await conn.execute(
        text(
            f"INSERT INTO {schema}.webhook_deliveries (provider, delivery_id, outcome) VALUES (:p, :d, 'new') "
            "ON CONFLICT DO NOTHING RETURNING 1"
        ),
        {"p": provider, "d": delivery_id[:255]},
    )
    return row.first() is not None


async def set_delivery_outcome(
    conn: AsyncConnection, schema: str, provider: str, delivery_id: str, outcome: str
) -> None:
    await conn.execute(
        text(f"UPDATE {schema}.webhook_deliveries SET outcome = :o WHERE provider = :p AND delivery_id = :d"),
        {"p": provider, "d": delivery_id[:255], "o": outcome},
    )


@dataclass(frozen=True, slots=True)
class Pending:
    """Payments not yet visible in the sheet, for one account."""

    source_balance_minor: int
    total_minor: int
    last_paid: date
    last_amount_minor: int


async def load_pending(
    conn: AsyncConnection, schema: str, account_ids: Iterable[str] | None = None
) -> dict[str, Pending]:
    where = "" if account_ids is None else "AND account_id = ANY(CAST(:a AS text[]))"
    rows = await conn.execute(
        text(
            f"""SELECT account_id,
                 (array_agg(source_balance_minor ORDER BY received_at))[1],
                 sum(amount_minor),
                 (array_agg((paid_at AT TIME ZONE 'UTC')::date ORDER BY paid_at DESC, received_at DESC))[1],
                 (array_agg(amount_minor ORDER BY paid_at DESC, received_at DESC))[1]
               FROM {schema}.payments WHERE reconciled_at IS NULL {where}
               GROUP BY account_id"""
        ),
        {} if account_ids is None else {"a": list(account_ids)},
    )
    return {a: Pending(int(b), int(t), d, int(m)) for a, b, t, d, m in rows.tuples()}


def _payment_date(paid_at: datetime) -> date:
    """The payment's calendar date, in UTC (the same rule as `load_pending`)."""
    return paid_at.astimezone(UTC).date()


def apply_to_row(row: AccountRow, pending: Pending) -> AccountRow | None:
    """The sheet row with pending payments applied, or None when the sheet already reflects them."""
    if row.balance_minor != pending.source_balance_minor:
        return None
    balance = pending.source_balance_minor - pending.total_minor
    return dataclasses.replace(
        row,
        balance_minor=balance,
        last_payment_date=pending.last_paid,
        last_payment_minor=pending.last_amount_minor,
        status=AccountStatus.PAID if balance <= 0 else row.status,
    )


async def adjust_rows(
    conn: AsyncConnection, schema: str, rows: list[AccountRow], now: datetime
) -> list[AccountRow]:
    """Apply pending payments to re-read rows (see module doc); reconcile the ones the sheet has booked."""
    if not rows:
        return rows
    pending = await load_pending(conn, schema, [r.account_id for r in rows])
    if not pending:
        return rows
    out: list[AccountRow] = []
    reconciled: list[str] = []
    for row in rows:
        pend = pending.get(row.account_id)
        if pend is None:
            out.append(row)
            continue
        adjusted = apply_to_row(row, pend)
        if adjusted is None:
            reconciled.append(row.account_id)
            out.append(row)
        else:
            out.append(adjusted)
    await reconcile(conn, schema, reconciled, now)
    return out


async def reconcile(conn: AsyncConnection, schema: str, account_ids: Sequence[str], now: datetime) -> None:
    if account_ids:
        await conn.execute(
            text(
                f"UPDATE {schema}.payments SET reconciled_at = :now "
                "WHERE reconciled_at IS NULL AND account_id = ANY(CAST(:a AS text[]))"
            ),
            {"a": list(account_ids), "now": now},
        )


async def _reject(tx: Transaction, payment: Payment, column: str, value: str, reason: str) -> PaymentResult:
    """Keep an unapplicable payment visible: ingest reject (source payment) + `ingest-rejected`."""
    batch_id = str(uuid.uuid4())
    rej = Rejection(
        row_number=0,
        account_id=payment.account_id,
        column=column,
        value=value,
        reason=f"{reason} ({payment.provider} payment {payment.payment_id})"[:500],
        balance_minor=payment.amount_minor,
        currency=payment.currency,
    )
    await snapshots.insert_rejects(tx.conn, tx.schema, "payment", batch_id, [rej], tx.now)
    tx.emit(
        snapshots.rejected_event(rej, batch_id, tx.now, source="payment"),
        id=f"payment:{payment.provider}:{payment.payment_id}:rejected",
    )
    return PaymentResult(
        status="rejected", account_id=payment.account_id, payment_id=payment.payment_id, reason=reason
    )


async def record_payment(tx: Transaction, payment: Payment) -> PaymentResult:
    conn, schema = tx.conn, tx.schema
    await snapshots.lock_snapshot(conn)
    seen = await conn.execute(
        text(f"SELECT 1 FROM {schema}.payments WHERE provider = :p AND payment_id = :i"),
        {"p": payment.provider, "i": payment.payment_id},
    )
    if seen.first() is not None:
        return PaymentResult(status="duplicate", account_id=payment.account_id, payment_id=payment.payment_id)
    snap = (
        await conn.execute(
            text(f"SELECT row_number, data FROM {schema}.snapshot WHERE account_id = :a FOR UPDATE"),
            {"a": payment.account_id},
        )
    ).first()
    if snap is None:
        return await _reject(tx, payment, "account_id", payment.account_id, "unknown account")
    row_number, data = snap[0], snap[1] if isinstance(snap[1], dict) else json.loads(snap[1])
    data = snapshots.open_data(
        await vault().for_reading(conn, [payment.account_id]), payment.account_id, data
    )
    if data["currency"] != payment.currency:
        return await _reject(
            tx,
            payment,
            "currency",
            payment.currency,
            f"currency differs from the account's {data['currency']}",
        )
    pending = (await load_pending(conn, schema, [payment.account_id])).get(payment.account_id)
    source_balance = pending.source_balance_minor if pending else int(data["balance_minor"])
    balance = int(data["balance_minor"]) - payment.amount_minor
    status = AccountStatus.PAID if balance <= 0 else AccountStatus(data.get("status", "open"))
    paid_on = _payment_date(payment.paid_at)
    newer = pending is None or paid_on >= pending.last_paid
    new_data = {
        **data,
        "balance_minor": balance,
        "last_payment_date": paid_on.isoformat() if newer else data.get("last_payment_date"),
        "last_payment_minor": payment.amount_minor if newer else data.get("last_payment_minor"),
        "status": status.value,
    }
    chash = content_hash(payment.account_id, new_data)  # of the plaintext, as a sheet row's
    event = snapshots.data_event(
        payment.account_id, "payment", "payment", row_number, chash, new_data, tx.now
    )
    key = (await vault().for_writing(conn, [payment.account_id]))[payment.account_id]
    snapshots.seal_data(key, payment.account_id, new_data)
    await conn.execute(
        text(
            f"UPDATE {schema}.snapshot SET data = CAST(:d AS jsonb), content_hash = :c, updated_at = :now "
            "WHERE account_id = :a"
        ),
        {
            "a": payment.account_id,
            "d": json.dumps(new_data, separators=(",", ":")),
            "c": chash,
            "now": tx.now,
        },
    )
    await conn.execute(
        text(
            f"INSERT INTO {schema}.payments (provider, payment_id, account_id, amount_minor, currency, paid_at, "
            "received_at, event_id, source_balance_minor, balance_after_minor) "
            "VALUES (:p, :i, :a, :amt, :cur, :paid, :now, :e, :src, :bal)"
        ),
        {
            "p": payment.provider,
            "i": payment.payment_id,
            "a": payment.account_id,
            "amt": payment.amount_minor,
            "cur": payment.currency,
            "paid": payment.paid_at,
            "now": tx.now,
            "e": payment.event_id,
            "src": source_balance,
            "bal": balance,
        },
    )
    tx.emit(event, id=f"payment:{payment.provider}:{payment.payment_id}")
    return PaymentResult(
        status="applied",
        account_id=payment.account_id,
        payment_id=payment.payment_id,
        balance_minor=balance,
        currency=payment.currency,
        account_status=status.value,
    )


async def record_failure(tx: Transaction, failure: PaymentFailure) -> PaymentResult:
    """A failed payment: recorded once per failed attempt and published as `PaymentFailed` (on
    `account-changed`, ce_id `payment-failed:<provider>:<failure id>`) in the same transaction. The account
    does not change. Unknown account: an ingest reject (source payment), as for payments."""
    conn, schema = tx.conn, tx.schema
    seen = await conn.execute(
        text(f"SELECT 1 FROM {schema}.payment_failures WHERE provider = :p AND failure_id = :f"),
        {"p": failure.provider, "f": failure.failure_id},
    )
    if seen.first() is not None:
        return PaymentResult(status="duplicate", account_id=failure.account_id, payment_id=failure.payment_id)
    snap = (
        await conn.execute(
            text(f"SELECT data FROM {schema}.snapshot WHERE account_id = :a"), {"a": failure.account_id}
        )
    ).first()
    if snap is None:
        batch_id = str(uuid.uuid4())
        rej = Rejection(
            row_number=0,
            account_id=failure.account_id,
            column="account_id",
            value=failure.account_id,
            reason=f"unknown account ({failure.provider} failed payment {failure.payment_id})"[:500],
            balance_minor=failure.amount_minor,
            currency=failure.currency,
        )
        await snapshots.insert_rejects(conn, schema, "payment", batch_id, [rej], tx.now)
        tx.emit(
            snapshots.rejected_event(rej, batch_id, tx.now, source="payment"),
            id=f"payment-failed:{failure.provider}:{failure.failure_id}:rejected",
        )
        return PaymentResult(
            status="rejected",
            account_id=failure.account_id,
            payment_id=failure.payment_id,
            reason="unknown account",
        )
    data = snap[0] if isinstance(snap[0], dict) else json.loads(snap[0])
    await conn.execute(
        text(
            f"INSERT INTO {schema}.payment_failures (provider, failure_id, payment_id, account_id, amount_minor, "
            "currency, failure_code, failure_message, failed_at, received_at, event_id) "
            "VALUES (:p, :f, :i, :a, :amt, :cur, :code, :msg, :at, :now, :e)"
        ),
        {
            "p": failure.provider,
            "f": failure.failure_id,
            "i": failure.payment_id,
            "a": failure.account_id,
            "amt": failure.amount_minor,
            "cur": failure.currency,
            "code": failure.failure_code,
            "msg": failure.failure_message,
            "at": failure.failed_at,
            "now": tx.now,
            "e": failure.event_id,
        },
    )
    balance = int(data["balance_minor"])
    tx.emit(
        PaymentFailed(
            account_id=failure.account_id,
            provider=failure.provider,
            payment_id=failure.payment_id,
            failure_id=failure.failure_id,
            amount_minor=failure.amount_minor,
            currency=failure.currency,
            failure_code=failure.failure_code,
            failure_message=failure.failure_message,
            balance_minor=balance,
            failed_at=failure.failed_at,
        ),
        id=f"payment-failed:{failure.provider}:{failure.failure_id}",
    )
    return PaymentResult(
        status="failed",
        account_id=failure.account_id,
        payment_id=failure.payment_id,
        balance_minor=balance,
        currency=data["currency"],
        account_status=data.get("status", "open"),
        reason=failure.failure_code or failure.failure_message or None,
    )


__all__ = [
    "PaymentDataError",
    "Pending",
    "adjust_rows",
    "apply_to_row",
    "claim_delivery",
    "load_pending",
    "parse_generic",
    "parse_generic_failure",
    "parse_stripe",
    "parse_stripe_failure",
    "record_failure",
    "record_payment",
    "set_delivery_outcome",
]
