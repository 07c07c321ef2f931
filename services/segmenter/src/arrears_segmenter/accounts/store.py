"""Read and write accounts, set-based: lock a batch of accounts at once, write them back in one statement
per table (`accounts`, and `account_channels` for their per-channel state).

Personal fields are opened once per batch read (`complete`) and sealed once per batch written (`save`,
`insert_decisions`) with the accounts' keys (`arrears_segmenter.sealing`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import bulk, sealing
from ..sealing import open_text, seal
from .account import FIELDS, NOT_COLUMNS, Account, ChannelState, SendNow
from .models import account_channels, accounts, decisions

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
    await complete(conn, found)
    return found


async def load(conn: AsyncConnection, account_id: str) -> Account | None:
    """One account, unlocked (reads)."""
    row = (await conn.execute(select(accounts).where(accounts.c.account_id == account_id))).first()
    if row is None:
        return None
    acct = Account(*row)
    await complete(conn, {account_id: acct})
    return acct


async def complete(conn: AsyncConnection, accts: dict[str, Account]) -> None:
    """Finish accounts just built from their rows (and locked): their personal fields opened with one key
    lookup for the batch, and their `channels` filled in with another query. An erased account reads
    `[erased]` and has no address."""
    if not accts:
        return
    keys = await sealing.reading_keys(conn, list(accts))
    for aid, acct in accts.items():
        acct.erased = sealing.erased(keys, aid)
        acct.customer_name = open_text(keys, aid, acct.customer_name) or ""
        acct.pause_reason = open_text(keys, aid, acct.pause_reason)
        if acct.send_now and acct.send_now.get("reason"):
            acct.send_now["reason"] = open_text(keys, aid, acct.send_now["reason"]) or ""
    rows = await conn.execute(
        select(account_channels).where(bulk.in_ids(account_channels.c.account_id, list(accts)))
    )
    for r in rows:
        state = ChannelState(*r[2:])
        state.address = sealing.open_address(keys, r.account_id, state.address)
        accts[r.account_id].channels[r.channel] = state


def sealed_send_now(keys: dict[str, AESGCM], account_id: str, so: SendNow | None) -> SendNow | None:
    """A pending send-now as stored: the person's reason sealed."""
    if not so or not so.get("reason"):
        return so
    stored = so.copy()
    stored["reason"] = seal(keys, account_id, so["reason"]) or ""
    return stored


def _sealed(keys: dict[str, AESGCM], a: Account) -> Account:
    """A copy of `a` as stored: its personal fields sealed (the account in memory stays plaintext)."""
    aid = a.account_id
    return replace(
        a,
        customer_name=seal(keys, aid, a.customer_name) or "",
        pause_reason=seal(keys, aid, a.pause_reason),
        send_now=sealed_send_now(keys, aid, a.send_now),
    )


async def save(conn: AsyncConnection, accts: Sequence[Account]) -> None:
    """Insert or overwrite these accounts (every column) and their channels, personal fields sealed. The
    accounts go to JSON as dataclasses: no dict per account on the way."""
    if not accts:
        return
    keys = await sealing.writing_keys(conn, [a.account_id for a in accts])
    await bulk.insert(
        conn,
        accounts,
        [_sealed(keys, a) for a in accts],
        columns=FIELDS,
        conflict=["account_id"],
        update=UPDATED_ON_SAVE,
        exclude=NOT_COLUMNS,  # channels: their own table, below
    )
    rows = [(a.account_id, name, s) for a in accts for name, s in a.channels.items()]
    if rows:  # column arrays through unnest: cheaper for Postgres than a JSON document per row
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
                "a": [k[0] for k in rows],
                "c": [k[1] for k in rows],
                "addr": [seal(keys, k[0], k[2].address) for k in rows],
                "con": [k[2].consent for k in rows],
                "o": [k[2].opted_out for k in rows],
                "i": [k[2].invalid for k in rows],
                "s": [k[2].stopped for k in rows],
            },
        )


async def insert_decisions(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Append to the decision log, each `reason` sealed with its account's key (a person's note, a pause's
    reason or a provider's error may be in it)."""
    if not rows:
        return
    keys = await sealing.writing_keys(conn, [r["account_id"] for r in rows])
    await bulk.insert(
        conn, decisions, [{**r, "reason": seal(keys, r["account_id"], r["reason"]) or ""} for r in rows]
    )


async def open_reasons(conn: AsyncConnection, rows: Sequence[Any]) -> list[str]:
    """The `reason` of each decision row, opened (one key lookup for the rows)."""
    keys = await sealing.reading_keys(conn, {r.account_id for r in rows})
    return [open_text(keys, r.account_id, r.reason) or "" for r in rows]
