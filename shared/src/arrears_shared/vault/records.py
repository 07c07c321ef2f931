"""Personal fields of events sealed on the way to the outbox and opened on the way into a handler.

Every record a service emits passes `seal_records` (stream/outbox.py) before it is stored, so the outbox,
the topics and the dead-letter topics hold only ciphertext of personal fields; `open_data` (cloudevents.py)
restores them for the consumer from the account's key. The record's subject (`ce_subject`, the account id)
names the key; a record for an erased account cannot be opened (`Erased`) and is skipped by consumers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncConnection

from ..events import BY_CE_TYPE, Event
from . import cipher, fields
from .keys import vault

SEALED_MARK = b'"' + cipher.PREFIX.encode()


class Erased(Exception):
    """The record belongs to an erased account: its personal data can never be read again."""


class NoKey(Exception):
    """The record is sealed for a subject the vault has no key (and no tombstone) for."""


def _header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    for k, v in headers:
        if k == name:
            return v.decode("utf-8", "replace")
    return None


def model_of(headers: Sequence[tuple[str, bytes]] | None) -> type[Event] | None:
    ce_type = _header(headers or (), "ce_type")
    return BY_CE_TYPE.get(ce_type) if ce_type else None


def subject_of(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    return _header(headers or (), "ce_subject")


def needs_opening(headers: Sequence[tuple[str, bytes]] | None, value: bytes | None) -> str | None:
    """The subject whose key opening this record needs, or None when it holds nothing sealed."""
    if value is None or SEALED_MARK not in value:
        return None
    model = model_of(headers)
    return subject_of(headers) if model is not None and model.personal else None


async def seal_records(conn: AsyncConnection, records: Sequence[Any]) -> list[Any]:
    """`records` (OutgoingRecord) with every plaintext personal field sealed under its subject's key."""
    work: list[tuple[int, Any, dict[str, Any], str]] = []
    for i, r in enumerate(records):
        model = model_of(r.headers)
        subject = subject_of(r.headers)
        if model is None or not model.personal or subject is None:
            continue
        try:
            data = json.loads(r.value)
        except (ValueError, RecursionError):
            continue  # a dead letter of a record that was never JSON (or too deep for it): kept byte for byte
        work.append((i, model, data, subject))
    if not work:
        return list(records)
    keys = await vault().for_writing(conn, {w[3] for w in work})
    out = list(records)
    for i, model, data, subject in work:
        cipher.seal_fields(keys[subject], subject, data, model.personal)
        value = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        out[i] = replace(records[i], value=value)
    return out


def open_data(
    model: type[Event], subject: str, value: bytes, keys: Mapping[str, AESGCM | None]
) -> dict[str, Any]:
    """The record's JSON data with its sealed personal fields opened. Raises `Erased` / `NoKey`."""
    if subject not in keys:
        raise NoKey(f"no data key for subject {subject!r}")
    aead = keys[subject]
    if aead is None:
        raise Erased(subject)
    data = json.loads(value)
    fields.apply(data, model.personal, lambda v: cipher.open_(aead, subject, v) if cipher.is_sealed(v) else v)
    return data
