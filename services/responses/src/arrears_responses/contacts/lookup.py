"""Finding the account behind an address without holding the address in clear (arrears_shared.vault).

Every address responses stores is sealed with its account's key; what an address is looked up by is its blind
index (`address_bidx`, `address_index`), computed by the channel's address kind. Rows written before sealing
(migration 0009) have no index and their address in clear: they are still found by the plaintext column, and
replaced by a sealed row the next time a message is sent to that address (contacts/handlers.py).
An erased account (its key destroyed, its `address_bidx` cleared) is never found: its addresses are unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from arrears_shared.channels import kind_of
from arrears_shared.stream.transaction import Transaction
from arrears_shared.vault.keys import vault
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


def address_index(channel: str, address: str | None) -> str | None:
    """The blind index of `address` on `channel` (by its address kind; "address" for a channel this
    installation does not know), or None for no address."""
    return vault().exact_index(kind_of(channel) or "address", address)


def is_erased(keys: Mapping[str, AESGCM | None], account_id: str) -> bool:
    """Whether `account_id` was erased (its key destroyed); an account never keyed is not."""
    return account_id in keys and keys[account_id] is None


async def erased_accounts(conn: AsyncConnection, account_ids: list[str]) -> set[str]:
    keys = await vault().for_reading(conn, account_ids) if account_ids else {}
    return {a for a in account_ids if is_erased(keys, a)}


async def is_live(conn: AsyncConnection, account_id: str) -> bool:
    """False for an erased account: nothing is matched to it or sent to it."""
    return not await erased_accounts(conn, [account_id])


async def find_contact(tx: Transaction, channel: str, address: str) -> Any:
    """The account (and its latest notice, time zone, currency) last messaged at `address` on `channel`
    (`address` normalised for the channel); None if nobody was, or if that account was erased."""
    row = (
        await tx.conn.execute(
            text(
                f"""SELECT account_id, notice_id, timezone, currency FROM {tx.schema}.contacts
                WHERE channel = :ch AND (address_bidx = :b OR (address_bidx IS NULL AND address = :a))
                ORDER BY sent_at DESC LIMIT 1"""
            ),
            {"ch": channel, "b": address_index(channel, address), "a": address},
        )
    ).first()
    if row is None or not await is_live(tx.conn, row.account_id):
        return None
    return row


async def lock_addresses(conn: AsyncConnection, pairs: Iterable[tuple[str, str]]) -> None:
    """Hold (channel, address) for the rest of the transaction (advisory locks, in one order so two batches
    never wait on each other in a cycle). The reply that looks an address up and the `message-sent` that
    indexes it take the same lock: the later of the two sees what the earlier wrote, so a reply can never be
    stored unmatched while the message it answers is being indexed unseen by it (each missing the other)."""
    keys = sorted({f"{channel}\x1f{address}" for channel, address in pairs})
    if keys:
        await conn.execute(
            text(
                "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 1701)))"
                " FROM (SELECT k FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k) AS ordered"
            ),
            {"keys": keys},
        )
