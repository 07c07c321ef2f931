"""Read and write accounts, set-based: lock a batch of accounts at once, write them back in one statement
per table (`accounts`, and `account_channels` for their per-channel state)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import bulk
from .account import FIELDS, Account, ChannelState
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
    await bulk.insert(
        conn,
        accounts,
        accts,
        columns=FIELDS,
        conflict=["account_id"],
        update=UPDATED_ON_SAVE,
        exclude=("channels",),  # its own table, below
    )
    keys = [(a.account_id, name, s) for a in accts for name, s in a.channels.items()]
    if keys:  # column arrays through unnest: cheaper for Postgres than a JSON document per row
        await conn.execute(
            text(
                f"INSERT INTO {account_channels.schema}.{account_channels.name} AS t"
                " (account_id, channel, address, consent, opted_out, invalid, stopped)"
                " SELECT * FROM unnest(CAST(:a AS text[]), CAST(:c AS text[]), CAST(:addr AS text[]),"
                " CAST(:con AS boolean[]), CAST(:o AS boolean[]), CAST(:i AS boolean[]), CAST(:s AS boolean[]))"
                " ON CONFLICT (account_id, channel) DO UPDATE SET address = EXCLUDED.address,"
                " consent = EXCLUDED.consent, opted_out = EXCLUDED.opted_out, invalid = EXCLUDED.invalid,"
                " stopped = EXCLUDED.stopped"
            ),
            {
                "a": [k[0] for k in keys],
                "c": [k[1] for k in keys],
                "addr": [k[2].address for k in keys],
                "con": [k[2].consent for k in keys],
                "o": [k[2].opted_out for k in keys],
                "i": [k[2].invalid for k in keys],
                "s": [k[2].stopped for k in keys],
            },
        )
