"""Reading what services wrote (outbox rows, topic records) as a consumer would: personal fields are sealed as
written (arrears_shared.vault) and opened with the data keys of the service's own database. Async helpers
take a connection to that database; `SyncKeys` / `opened_json` serve sync call sites (keys are fetched on a
worker thread)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from arrears_shared.cloudevents import Envelope, decode
from arrears_shared.db.engine import make_engine
from arrears_shared.events import BY_CE_TYPE
from arrears_shared.vault import cipher, fields
from arrears_shared.vault.keys import Keys, vault
from arrears_shared.vault.records import model_of, needs_opening, open_data
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.ext.asyncio import AsyncConnection

Headers = Sequence[tuple[str, bytes]]
Record = tuple[Headers, bytes]


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


_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="vault-keys")


class SyncKeys(Mapping[str, AESGCM | None]):
    """The data keys of database `url`, looked up on first use (a Mapping, as `decode` takes)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._keys: dict[str, AESGCM | None] = {}

    def _load(self, subject: str) -> None:
        async def fetch() -> dict[str, AESGCM | None]:
            engine = make_engine(self.url, pool_size=1)
            try:
                async with engine.connect() as conn:
                    return await vault().for_reading(conn, [subject])
            finally:
                await engine.dispose()

        self._keys.update(_pool.submit(asyncio.run, fetch()).result())

    def __getitem__(self, subject: str) -> AESGCM | None:
        if subject not in self._keys:
            self._load(subject)
        return self._keys[subject]

    def __contains__(self, subject: object) -> bool:
        if isinstance(subject, str) and subject not in self._keys:
            self._load(subject)
        return subject in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def opened_json(url: str, headers: Any, value: bytes) -> dict[str, Any]:
    """An outbox row's or record's JSON data with its personal fields opened (no validation)."""
    hs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in headers}
    model = BY_CE_TYPE[hs["ce_type"]]
    if not model.personal:
        return json.loads(value)
    return open_data(model, hs["ce_subject"], bytes(value), SyncKeys(url))
