"""Settlement offers: a supervisor offers the customer a reduced amount that settles the account if paid by
the offer's last day. Making or withdrawing one is one transaction: the row, the audit entry and an
`arrears.settlement.offer.v1` event on `overrides` (the portal shows it to the verified debtor). The
customer's acceptance comes back from the portal as a `record_promise` override naming the offer
(`on_accepted`): the offer is marked accepted, the collector's timeline says so, and the promise it makes is
tracked like any other (promises.service). Once payments cover it with a balance left, the business is asked
to write the remainder off (`on_settlement_paid`: a `settlement_write_off` task for the recovery team, once
per offer)."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta
from typing import Any

from arrears_shared import paging
from arrears_shared.auth import Principal
from arrears_shared.clock import local_day
from arrears_shared.events import OverrideRequested, SettlementOfferChanged
from arrears_shared.money import format_minor
from arrears_shared.stream.transaction import Transaction
from arrears_shared.vault.cipher import open_value, seal_value
from arrears_shared.vault.keys import vault
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..audit.service import append
from ..cases.models import SCHEMA
from ..deps import Deps
from ..tasks.service import create_task
from .models import MAX_DAYS_AHEAD, OfferCreate, OfferView

_ONE_OPEN = "settlement_offers_one_open"  # the unique index: one open offer per account (migration 0010)


class Refused(ValueError):
    """The offer cannot be made or changed; `status` is the HTTP answer (404, 409, 422)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def balance_of(conn: AsyncConnection, account_id: str) -> tuple[int, str] | None:
    """The account's balance and currency as escalation last saw them (its `account-changed` activity);
    None for an account it never saw or that was removed."""
    row = (
        await conn.execute(
            text(
                f"""SELECT kind, data FROM {SCHEMA}.activity WHERE account_id = :a AND kind LIKE 'account.%'
                ORDER BY at DESC, id DESC LIMIT 1"""
            ),
            {"a": account_id},
        )
    ).first()
    if row is None or row.kind == "account.removed":
        return None
    data = row.data if isinstance(row.data, dict) else json.loads(row.data)
    return int(data["balance_minor"]), str(data["currency"])


async def debtor_today(conn: AsyncConnection, account_id: str, now: datetime) -> date:
    """The debtor's day (an offer's `expires_on` is a day in their zone, as the portal reads it): the zone of
    the account's last `account.*` activity when it carries one, else the UTC day."""
    zone = (
        await conn.execute(
            text(
                f"""SELECT data->>'timezone' FROM {SCHEMA}.activity
                WHERE account_id = :a AND kind LIKE 'account.%' ORDER BY at DESC, id DESC LIMIT 1"""
            ),
            {"a": account_id},
        )
    ).scalar()
    return local_day(zone, now)


async def _sealed(conn: AsyncConnection, account_id: str, note: str) -> str:
    """A person's words about the account, sealed with its data key (erasure makes them unreadable)."""
    if not note.strip():
        return ""
    key = (await vault().for_writing(conn, [account_id]))[account_id]
    return seal_value(key, account_id, note.strip()) or note.strip()


def _event(row: Any, status: str, who: Principal, now: datetime) -> SettlementOfferChanged:
    return SettlementOfferChanged(
        account_id=row["account_id"],
        offer_id=row["offer_id"],
        status=status,  # type: ignore[arg-type]
        amount_minor=row["amount_minor"],
        currency=row["currency"],
        balance_minor=row["balance_minor"],
        expires_on=row["expires_on"],
        actor=who.name,
        role=who.role if who.role in ("collector", "supervisor", "admin") else "system",  # type: ignore[arg-type]
        changed_at=now,
    )


async def create(
    tx: Transaction, who: Principal, account_id: str, body: OfferCreate, today: date, now: datetime
) -> OfferView:
    conn = tx.conn
    known = await balance_of(conn, account_id)
    if known is None:
        raise Refused(422, "unknown account: escalation has not seen it (or it was removed)")
    balance, currency = known
    if body.amount_minor >= balance:
        raise Refused(
            422, f"an offer is less than the balance ({format_minor(balance, currency)}); this one is not"
        )
    if not today <= body.expires_on <= today + timedelta(days=MAX_DAYS_AHEAD):
        raise Refused(422, f"expires_on must be between {today} and {today + timedelta(days=MAX_DAYS_AHEAD)}")
    # an offer whose day has passed no longer blocks a new one
    await conn.execute(
        text(
            f"""UPDATE {SCHEMA}.settlement_offers SET status = 'expired'
            WHERE account_id = :a AND status = 'offered' AND expires_on < :today"""
        ),
        {"a": account_id, "today": today},
    )
    open_one = (
        await conn.execute(
            text(
                f"SELECT offer_id FROM {SCHEMA}.settlement_offers WHERE account_id = :a AND status = 'offered'"
            ),
            {"a": account_id},
        )
    ).first()
    if open_one is not None:
        raise Refused(409, f"offer {open_one.offer_id} is still open: withdraw it first")
    note = body.note.strip()
    sealed = await _sealed(conn, account_id, note)
    row = {
        "offer_id": f"so-{uuid.uuid4().hex[:16]}",
        "account_id": account_id,
        "amount_minor": body.amount_minor,
        "currency": currency,
        "balance_minor": balance,
        "expires_on": body.expires_on,
    }
    try:
        await conn.execute(
            text(
                f"""INSERT INTO {SCHEMA}.settlement_offers (offer_id, account_id, amount_minor, currency,
                    balance_minor, expires_on, note, status, created_by, created_at)
                VALUES (:offer_id, :account_id, :amount_minor, :currency, :balance_minor, :expires_on, :note,
                    'offered', :by, :at)"""
            ),
            row | {"note": sealed, "by": who.name, "at": now},
        )
    except IntegrityError as e:
        # two creates at once both saw no open offer; the unique index let the first one in: the second
        # gets the same answer as a create made after it (the transaction is rolled back by the caller)
        if _ONE_OPEN not in str(e.orig):
            raise
        raise Refused(409, "another offer for this account was just made: withdraw it first") from None
    await append(
        conn,
        actor=who.name,
        role=who.role,
        action="offer.create",
        entity="account",
        entity_id=account_id,
        after=row | {"expires_on": body.expires_on.isoformat(), "status": "offered"},
        reason=sealed,
        at=now,
    )
    tx.emit(_event(row, "offered", who, now), id=f"settlement-offer:{row['offer_id']}:offered", time=now)
    return OfferView(
        **row,
        status="offered",
        note=note,
        created_by=who.name,
        created_at=now,
        withdrawn_by=None,
        withdrawn_at=None,
        accepted_at=None,
    )


async def withdraw(
    tx: Transaction, who: Principal, account_id: str, offer_id: str, now: datetime, reason: str = ""
) -> None:
    conn = tx.conn
    row = (
        (
            await conn.execute(
                text(
                    f"""SELECT * FROM {SCHEMA}.settlement_offers WHERE offer_id = :o AND account_id = :a
                    FOR UPDATE"""
                ),
                {"o": offer_id, "a": account_id},
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise Refused(404, "no such offer on this account")
    if row["status"] != "offered":
        raise Refused(409, f"the offer is {row['status']}: it can no longer be withdrawn")
    await conn.execute(
        text(
            f"""UPDATE {SCHEMA}.settlement_offers SET status = 'withdrawn', withdrawn_by = :by, withdrawn_at = :at
            WHERE offer_id = :o"""
        ),
        {"o": offer_id, "by": who.name, "at": now},
    )
    await append(
        conn,
        actor=who.name,
        role=who.role,
        action="offer.withdraw",
        entity="account",
        entity_id=account_id,
        before={"offer_id": offer_id, "status": "offered"},
        after={"offer_id": offer_id, "status": "withdrawn"},
        reason=await _sealed(conn, account_id, reason),
        at=now,
    )
    tx.emit(_event(row, "withdrawn", who, now), id=f"settlement-offer:{offer_id}:withdrawn", time=now)


async def on_accepted(conn: AsyncConnection, ev: OverrideRequested) -> None:
    """The customer accepted an offer in the portal (a `record_promise` naming it): mark it accepted and say
    so on the collector's timeline. Replayed, it changes nothing; an offer withdrawn meanwhile stays
    withdrawn, and the timeline says the customer accepted it anyway (the promise is tracked all the same)."""
    offer_id = ev.settlement_offer_id
    row = (
        await conn.execute(
            text(
                f"""UPDATE {SCHEMA}.settlement_offers SET status = 'accepted', accepted_at = :at,
                    accepted_override_id = :o
                WHERE offer_id = :id AND account_id = :a AND status IN ('offered', 'expired')
                RETURNING amount_minor, currency, expires_on"""
            ),
            {"id": offer_id, "a": ev.account_id, "at": ev.requested_at, "o": ev.override_id},
        )
    ).first()
    if row is not None:
        summary = (
            f"settlement offer accepted in the portal: pays {format_minor(row.amount_minor, row.currency)} "
            f"by {row.expires_on.isoformat()}"
        )
    else:
        current = (
            await conn.execute(
                text(
                    f"SELECT status, accepted_override_id FROM {SCHEMA}.settlement_offers WHERE offer_id = :id"
                ),
                {"id": offer_id},
            )
        ).first()
        if current is not None and current.accepted_override_id == ev.override_id:
            return  # a replay
        state = current.status if current is not None else "unknown"
        summary = f"settlement offer {offer_id} accepted in the portal, but it is {state} here"
    await conn.execute(
        text(
            f"""INSERT INTO {SCHEMA}.activity (id, account_id, at, kind, summary, data)
            VALUES (:id, :a, :at, 'offer.accepted', :s, CAST(:d AS jsonb)) ON CONFLICT (id) DO NOTHING"""
        ),
        {
            "id": f"offer-accepted:{ev.override_id}",
            "a": ev.account_id,
            "at": ev.requested_at,
            "s": summary,
            "d": json.dumps({"offer_id": offer_id, "override_id": ev.override_id}),
        },
    )


WRITE_OFF_KIND, WRITE_OFF_TEAM = "settlement_write_off", "recovery"


async def on_settlement_paid(
    conn: AsyncConnection, deps: Deps, promise: Any, balance: int, currency: str, now: datetime
) -> None:
    """The promise accepting a settlement offer was kept and `balance` is left: the business writes it off
    (the segmenter has stopped the sequence for good). One task per offer, however often it is replayed."""
    offer_id = promise.settlement_offer_id
    cur = promise.currency or currency
    detail = (
        f"settlement offer {offer_id} paid ({format_minor(promise.paid_minor or 0, cur)} of "
        f"{format_minor(promise.amount_minor or 0, cur)}): write off the remaining {format_minor(balance, cur)}"
    )
    created = await create_task(
        conn,
        deps,
        account_id=promise.account_id,
        case_id=None,
        kind=WRITE_OFF_KIND,
        team=WRITE_OFF_TEAM,
        priority="normal",
        due_in=timedelta(days=3),
        sla=timedelta(days=2),
        rule_id=None,
        trigger_id=f"settlement:{offer_id}",
        detail=detail,
        now=now,
        promise_id=promise.promise_id,
    )
    if created is None:
        return  # a replay: the task is there already
    await conn.execute(
        text(
            f"""INSERT INTO {SCHEMA}.activity (id, account_id, at, kind, summary, data)
            VALUES (:id, :a, :at, 'offer.paid', :s, CAST(:d AS jsonb)) ON CONFLICT (id) DO NOTHING"""
        ),
        {
            "id": f"offer-paid:{offer_id}",
            "a": promise.account_id,
            "at": now,
            "s": detail,
            "d": json.dumps({"offer_id": offer_id, "task_id": created, "balance_minor": balance}),
        },
    )


async def page_offers(
    conn: AsyncConnection, account_id: str, today: date, limit: int = 50, cursor: str | None = None
) -> tuple[list[OfferView], str | None]:
    """The account's offers, newest first; an offered one past its day reads `expired`."""
    after, params = paging.after_sql(cursor, (("created_at", datetime), ("offer_id", str)))
    rows = await conn.execute(
        text(
            f"""SELECT * FROM {SCHEMA}.settlement_offers WHERE {after} AND account_id = :a
            ORDER BY created_at DESC, offer_id DESC LIMIT :n"""
        ),
        {"n": limit + 1, "a": account_id, **params},
    )
    found, nxt = paging.page(rows.mappings().all(), limit, lambda r: (r["created_at"], r["offer_id"]))
    key = None
    if any(r["note"] for r in found):
        key = (await vault().for_reading(conn, [account_id])).get(account_id)
    out = []
    for r in found:
        status = "expired" if r["status"] == "offered" and r["expires_on"] < today else r["status"]
        fields = {k: r[k] for k in OfferView.model_fields if k in r and k not in ("status", "note")}
        out.append(
            OfferView(
                **fields,
                status=status,
                note=open_value(key, account_id, r["note"]) or "" if r["note"] else "",
            )
        )
    return out, nxt
