"""Personal data of the segmenter's own tables sealed at rest with the account's key (arrears_shared.vault).

Sealed columns: `accounts.customer_name`, `accounts.pause_reason`, the `reason` of `accounts.send_now`,
`account_channels.address` and `decisions.reason`. They are sealed where rows are built for writing (one
`writing_keys` per batch, in the writing transaction) and opened where rows become `Account` objects or API
views (one `reading_keys` per batch): the code in between works on plaintext. A value written before sealing
was on is plaintext and is read as it is, so an upgrade needs no backfill.

An erased account (its key destroyed) has no address at all: nothing is planned or sent to it, and its name
and texts read `[erased]`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from arrears_shared.vault import cipher
from arrears_shared.vault.keys import Keys, vault
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger(__name__)

ERASED = cipher.ERASED


async def reading_keys(conn: AsyncConnection, account_ids: Collection[str]) -> Keys:
    """The keys that open a batch of rows (None: erased; absent: never keyed, so plaintext)."""
    if not account_ids:
        return {}
    return await vault().for_reading(conn, account_ids)


async def writing_keys(conn: AsyncConnection, account_ids: Collection[str]) -> dict[str, AESGCM]:
    """A key for every account of a batch being written, created in `conn`'s transaction where missing."""
    ids = list(dict.fromkeys(account_ids))
    return await vault().for_writing(conn, ids) if ids else {}


def erased(keys: Keys, account_id: str) -> bool:
    return account_id in keys and keys[account_id] is None


def seal(keys: dict[str, AESGCM], account_id: str, value: str | None) -> str | None:
    """A value for storage (None and "" as they are; a value already sealed is never sealed twice)."""
    return cipher.seal_value(keys[account_id], account_id, value)


def open_text(keys: Keys, account_id: str, value: str | None) -> str | None:
    """A stored text for use and display: `[erased]` for an erased account (even written in clear before
    sealing was on), `[unreadable]` if it does not open."""
    if not value:
        return value
    if erased(keys, account_id):
        return ERASED
    return cipher.open_value(keys.get(account_id), account_id, value)


def open_address(keys: Keys, account_id: str, value: str | None) -> str | None:
    """A stored address to send to, or None: an erased account's addresses (and one that does not open)
    are unknown, so nothing is ever sent to them."""
    if not value or erased(keys, account_id):
        return None
    if not cipher.is_sealed(value):
        return value  # written before sealing was on
    aead = keys.get(account_id)
    if aead is None:
        log.warning("sealed address without a key: treated as unknown")
        return None
    try:
        return cipher.open_(aead, account_id, value)
    except cipher.Unreadable:
        log.warning("sealed address does not open: treated as unknown")
        return None
