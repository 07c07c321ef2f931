"""Reading what services wrote, as a consumer would: sealed personal fields opened with the test database's
vault (arrears_shared.vault). For sync call sites too: keys are fetched on a worker thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from arrears_shared.cloudevents import Envelope, decode
from arrears_shared.db.engine import make_engine
from arrears_shared.events import BY_CE_TYPE
from arrears_shared.vault.keys import vault
from arrears_shared.vault.records import open_data
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

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


def opened(url: str, headers: Sequence[tuple[str, bytes]] | None, value: bytes | None) -> Envelope:
    """`decode` with the personal fields opened (headers as bytes, as on a Kafka record)."""
    return decode(headers, value, SyncKeys(url))


def opened_row(url: str, headers: Any, value: bytes) -> Envelope:
    """`opened` for an outbox row (`headers` = its jsonb [[name, value], ...])."""
    return opened(url, [(k, v.encode()) for k, v in headers], bytes(value))


def opened_json(url: str, headers: Any, value: bytes) -> dict[str, Any]:
    """An outbox row's or record's JSON data with its personal fields opened (no validation)."""
    hs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in headers}
    model = BY_CE_TYPE[hs["ce_type"]]
    if not model.personal:
        return json.loads(value)
    return open_data(model, hs["ce_subject"], bytes(value), SyncKeys(url))
