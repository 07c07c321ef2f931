"""Reading one account's projection, its sealed fields opened with the account's vault key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from arrears_shared.vault.cipher import ERASED, UNREADABLE, open_value
from arrears_shared.vault.keys import vault
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    first_name: str | None
    phone_tail: str | None  # the verification fact; None = this account cannot be verified here
    balance_minor: int
    currency: str
    due_date: date
    status: str
    removed: bool
    timezone: str | None
    channels: tuple[str, ...]
    country: str | None = None  # where the account's legal contact window comes from (compliance rules)
    region: str | None = None


async def get_account(conn: AsyncConnection, schema: str, account_id: str) -> Account | None:
    row = (
        await conn.execute(
            text(
                f"""SELECT account_id, first_name, phone_tail, balance_minor, currency, due_date, status, removed,
                           timezone, channels, country, region FROM {schema}.accounts WHERE account_id = :a"""
            ),
            {"a": account_id},
        )
    ).one_or_none()
    if row is None:
        return None
    key = (await vault().for_reading(conn, [account_id])).get(account_id)
    first = open_value(key, account_id, row.first_name)
    tail = open_value(key, account_id, row.phone_tail)
    if first in (ERASED, UNREADABLE):  # erased: unreadable by design, and so not verifiable either
        first = tail = None
    if tail is not None and not tail.isdigit():
        tail = None
    return Account(
        account_id=row.account_id,
        first_name=first,
        phone_tail=tail,
        balance_minor=row.balance_minor,
        currency=row.currency,
        due_date=row.due_date,
        status=row.status,
        removed=row.removed,
        timezone=row.timezone,
        channels=tuple(row.channels or ()),
        country=row.country,
        region=row.region,
    )
