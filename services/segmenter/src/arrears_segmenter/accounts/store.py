"""Read and write accounts, set-based: lock a batch of accounts at once, write them back in one statement
per table (`accounts`, and `account_channels` for their per-channel state)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import bulk
from .account import CHANNEL_FIELDS, FIELDS, Account, ChannelState
from .models import account_channels, accounts

# every column but the key and the first sighting is overwritten on a write-back
UPDATED_ON_SAVE = [c for c in FIELDS if c not in ("account_id", "first_seen_at")]


async def load_locked(conn: AsyncConnection, ids: Iterable[str]) -> dict[str, Account]:
    """Accounts by id, locked in id order (so two writers never deadlock), with their channels."""
    wanted = sorted(ids)
    rows = await conn.execute(
        select(accounts)
        .where(bulk.in_ids(accounts.c.account_id, wanted))
        .order_by(accounts.c.account_id)
        .with_for_update()
    )
    found = {r.account_id: Account(*r) for r in rows}
    await attach_channels(conn, found)
    return found


async def load(conn: AsyncConnection, account_id: str) -> Account | None:
    """One account, unlocked (reads)."""
    row = (await conn.execute(select(accounts).where(accounts.c.account_id == account_id))).first()
    if row is None:
        return None
    acct = Account(*row)
    await attach_channels(conn, {account_id: acct})
    return acct


async def attach_channels(conn: AsyncConnection, accts: dict[str, Account]) -> None:
    """Fill in `channels` of accounts read (and locked) with another query."""
    if not accts:
        return
    rows = await conn.execute(
        select(account_channels).where(bulk.in_ids(account_channels.c.account_id, list(accts)))
    )
    for r in rows:
        accts[r.account_id].channels[r.channel] = ChannelState(*r[2:])


async def save(conn: AsyncConnection, accts: Sequence[Account]) -> None:
    """Insert or overwrite these accounts (every column) and their channels. The accounts go to JSON as they
    are: no dict per account on the way."""
    await bulk.insert(conn, accounts, accts, columns=FIELDS, conflict=["account_id"], update=UPDATED_ON_SAVE)
    rows: list[dict[str, Any]] = [
        {
            "account_id": a.account_id,
            "channel": name,
            "address": s.address,
            "consent": s.consent,
            "opted_out": s.opted_out,
            "invalid": s.invalid,
            "stopped": s.stopped,
        }
        for a in accts
        for name, s in a.channels.items()
    ]
    if rows:
        await bulk.insert(
            conn,
            account_channels,
            rows,
            conflict=["account_id", "channel"],
            update=list(CHANNEL_FIELDS),
        )
