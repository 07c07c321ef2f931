"""Personal data of the delivery tables at rest, sealed with the account's data key (arrears_shared.vault):

- `deliveries.to_address`, the personal fields of `deliveries.payload` (`NoticeDue.personal`: to,
  customer_name, fallback_to.*, text) and every string of `deliveries.rendered` (the provider message: SMS
  content, the email's raw MIME, WhatsApp text bodies and template parameters) except the structural keys in
  `READABLE` (message type, template name and language, thread id, ...);
- `invalid_channels.address`, found by `address_bidx` (a blind index of the channel and address, emptied by
  erasure). Rows written before sealing keep a plaintext address and no index: they are matched by address.

Seal on write with the keys of `vault().for_writing` (one call per batch, in the writing transaction); open on
read with those of `vault().for_reading` (one call per claimed batch). A row of an erased account opens as
`[erased]` and is flagged (`DeliveryRow.erased`): it is never sent, and no blind index is written for it.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncConnection

from ..vault import cipher
from ..vault.keys import Keys, vault

# keys of `rendered` whose string values are structure, not message content: left readable
READABLE = frozenset({"type", "via", "encoding", "thread_id", "window_ends_at", "name", "code"})


def address_index(channel: str, address: str | None) -> str | None:
    """The blind index an address of `channel` is found by (the channel is its kind: email is lower-cased)."""
    return vault().exact_index(channel, address)


def seal_rendered(aead: AESGCM, subject: str, rendered: Any, key: str | None = None) -> Any:
    """A sealed copy of a rendered message (the original, used for the send, is left as it is)."""
    if isinstance(rendered, dict):
        return {k: seal_rendered(aead, subject, v, k) for k, v in rendered.items()}
    if isinstance(rendered, list):
        return [seal_rendered(aead, subject, v, key) for v in rendered]
    if isinstance(rendered, str) and rendered and key not in READABLE and not cipher.is_sealed(rendered):
        return cipher.seal(aead, subject, rendered)
    return rendered


async def live_keys(conn: AsyncConnection, accounts: Collection[str]) -> dict[str, AESGCM]:
    """Keys to seal with for the accounts that are not erased (an erased account is left out: nothing about
    it, not even a blind index, is written again)."""
    readable = await vault().for_reading(conn, accounts)
    live = [a for a in dict.fromkeys(accounts) if a not in readable or readable[a] is not None]
    return await vault().for_writing(conn, live) if live else {}


def invalid_address(aead: AESGCM, account_id: str, channel: str, address: str) -> dict[str, Any]:
    """The `address` (sealed) and `address_bidx` of an `invalid_channels` row."""
    return {"t": cipher.seal_value(aead, account_id, address), "b": address_index(channel, address)}


class Opener:
    """Opens the sealed values of one account's row, noting whether the account is erased (its key destroyed:
    even a plaintext row written before sealing is never sent) or a sealed value did not open (no key, or
    sealed for another key)."""

    def __init__(self, keys: Keys, subject: str) -> None:
        self.subject = subject
        self.aead = keys.get(subject)
        self.erased = subject in keys and self.aead is None
        self.unreadable = False

    def __call__(self, value: str) -> str:
        if not cipher.is_sealed(value):
            return value
        if self.aead is None:
            self.unreadable = self.unreadable or not self.erased
            return cipher.ERASED
        try:
            return cipher.open_(self.aead, self.subject, value)
        except cipher.Unreadable:
            self.unreadable = True
            return cipher.UNREADABLE

    def tree(self, node: Any) -> Any:
        """A JSON document (a rendered message) with every sealed string opened."""
        if isinstance(node, dict):
            return {k: self.tree(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self.tree(v) for v in node]
        return self(node) if isinstance(node, str) else node
