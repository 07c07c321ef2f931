"""Settlement offers a supervisor made (escalation publishes `arrears.settlement.offer.v1` on `overrides`):
the portal keeps each one, shows the open ones to the verified debtor and takes their acceptance.

Accepting is one transaction: the offer row moves to `accepted` (only from `offered`, on or before its last
day in the debtor's zone) and the action is the platform's own event, a `record_promise` override for the
offer's amount by its last day naming the offer (`settlement_offer_id`), audited like every portal action.
Accepting again changes nothing; a withdrawn or expired offer cannot be accepted. The debtor then pays the
offer's amount through the same checkout as any payment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum

from arrears_shared.cloudevents import Envelope
from arrears_shared.events import SettlementOfferChanged
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..actions.service import take_action
from ..verification.sessions import Session


@dataclass(frozen=True, slots=True)
class Offer:
    offer_id: str
    amount_minor: int
    currency: str
    expires_on: date
    status: str  # offered | accepted | withdrawn


class Accepted(Enum):
    NOW = "now"
    ALREADY = "already"  # accepted before: nothing changes
    UNAVAILABLE = "unavailable"  # unknown, withdrawn or past its day
    STALE = "stale"  # no longer less than what the debtor owes now (part payments), or another currency


async def handle_offers(events: Sequence[Envelope], tx: Transaction) -> None:
    """Keep the newest state of each offer; an accepted one stays accepted (a withdrawal that crossed the
    acceptance does not undo what the debtor was shown and agreed to)."""
    for env in events:
        ev = env.data
        if not isinstance(ev, SettlementOfferChanged):
            continue
        await tx.conn.execute(
            text(
                f"""INSERT INTO {tx.schema}.settlement_offers (offer_id, account_id, amount_minor, currency,
                    balance_minor, expires_on, status, changed_at)
                VALUES (:o, :a, :amt, :cur, :bal, :exp, :st, :at)
                ON CONFLICT (offer_id) DO UPDATE SET status = EXCLUDED.status, changed_at = EXCLUDED.changed_at
                WHERE {tx.schema}.settlement_offers.status <> 'accepted'
                  AND {tx.schema}.settlement_offers.changed_at <= EXCLUDED.changed_at"""
            ),
            {
                "o": ev.offer_id,
                "a": ev.account_id,
                "amt": ev.amount_minor,
                "cur": ev.currency,
                "bal": ev.balance_minor,
                "exp": ev.expires_on,
                "st": ev.status,
                "at": ev.changed_at,
            },
        )


async def visible(conn: AsyncConnection, schema: str, account_id: str, today: date) -> list[Offer]:
    """What the debtor sees: open offers still within their day, and accepted ones (to pay)."""
    rows = await conn.execute(
        text(
            f"""SELECT offer_id, amount_minor, currency, expires_on, status FROM {schema}.settlement_offers
            WHERE account_id = :a AND (status = 'accepted' OR (status = 'offered' AND expires_on >= :today))
            ORDER BY changed_at DESC LIMIT 5"""
        ),
        {"a": account_id, "today": today},
    )
    return [Offer(r.offer_id, r.amount_minor, r.currency, r.expires_on, r.status) for r in rows]


async def accept(
    tx: Transaction,
    session: Session,
    offer_id: str,
    today: date,
    now: datetime,
    balance_minor: int,
    currency: str,
) -> Accepted:
    """Accept the offer if it is still open, within its day, and still a settlement of what the debtor owes
    now: its amount less than the current balance, in the account's currency (a supervisor made it against
    the balance of that moment; part payments since may have brought the balance to or below it)."""
    row = (
        await tx.conn.execute(
            text(
                f"""SELECT offer_id, amount_minor, currency, expires_on, status FROM {tx.schema}.settlement_offers
                WHERE offer_id = :o AND account_id = :a FOR UPDATE"""
            ),
            {"o": offer_id, "a": session.account_id},
        )
    ).first()
    if row is not None and row.status == "accepted":
        return Accepted.ALREADY
    if row is None or row.status != "offered" or row.expires_on < today:
        return Accepted.UNAVAILABLE
    if row.currency != currency or not row.amount_minor < balance_minor:
        return Accepted.STALE
    action_id = await take_action(
        tx,
        session,
        "offer_accept",
        "record_promise",
        now,
        promise_date=row.expires_on,
        promise_amount_minor=row.amount_minor,
        settlement_offer_id=row.offer_id,
        detail={"currency": row.currency},
    )
    await tx.conn.execute(
        text(
            f"""UPDATE {tx.schema}.settlement_offers SET status = 'accepted', accepted_at = :now,
                accepted_action_id = :act WHERE offer_id = :o"""
        ),
        {"o": offer_id, "now": now, "act": action_id},
    )
    return Accepted.NOW
