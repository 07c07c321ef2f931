"""Reading what responses wrote (its outbox rows, the topics) as a consumer reads it: personal fields are sealed
as written (arrears_shared.vault) and opened with the data keys of the service's own database."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from arrears_shared.cloudevents import Envelope, decode
from arrears_shared.vault import cipher, fields
from arrears_shared.vault.keys import Keys, vault
from arrears_shared.vault.records import model_of, needs_opening, open_data
from sqlalchemy.ext.asyncio import AsyncConnection

Headers = Sequence[tuple[str, bytes]]
Record = tuple[Headers, bytes]

__all__ = ["Record", "assert_sealed", "data_keys", "open_json", "open_records", "row_record"]


def row_record(row: Any) -> Record:
    """An outbox row (`headers` jsonb [[name, value], ...], `value` bytea) as a Kafka record's (headers, value)."""
    return [(k, v.encode()) for k, v in row.headers], bytes(row.value)


def assert_sealed(headers: Headers, value: bytes) -> None:
    """Every personal field the record's data holds is ciphertext: its plaintext never left the service."""
    model = model_of(headers)
    if model is None or not model.personal:
        return
    plain: list[str] = []

    def check(v: str) -> str:
        if not cipher.is_sealed(v):
            plain.append(v)
        return v

    fields.apply(json.loads(value), model.personal, check)
    assert not plain, f"{model.__name__}: {len(plain)} personal field(s) in plaintext"


async def data_keys(conn: AsyncConnection, records: Iterable[Record]) -> Keys:
    """The data keys (of the vault in `conn`'s database) of every subject whose sealed fields `records` hold."""
    subjects = {s for h, v in records if (s := needs_opening(h, v)) is not None}
    return await vault().for_reading(conn, subjects) if subjects else {}


async def open_records(conn: AsyncConnection, records: Sequence[Record]) -> list[Envelope]:
    """`decode` of each record with its personal fields opened (after checking they were sealed)."""
    for h, v in records:
        assert_sealed(h, v)
    keys = await data_keys(conn, records)
    return [decode(h, v, keys) for h, v in records]


async def open_json(conn: AsyncConnection, records: Sequence[Record]) -> list[dict[str, Any]]:
    """Each record's JSON data with its personal fields opened (after checking they were sealed); no validation."""
    for h, v in records:
        assert_sealed(h, v)
    keys = await data_keys(conn, records)
    out: list[dict[str, Any]] = []
    for h, v in records:
        subject = needs_opening(h, v)
        model = model_of(h)
        out.append(open_data(model, subject, v, keys) if subject is not None and model else json.loads(v))
    return out
