"""Helpers shared by the ingest tests: outbox reading and the Sheets emulator in a thread."""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable, Sequence
from typing import Any

import httpx
from arrears_ingest.settings import IngestSettings
from arrears_shared.cloudevents import Envelope, decode
from arrears_shared.vault import cipher, fields
from arrears_shared.vault.keys import Keys, vault
from arrears_shared.vault.records import model_of, needs_opening
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

try:  # tests/ is not a package: the module is `ingest.support` under pytest's rootdir-relative import
    from emulators.conftest_sheets import ServerThread, SheetsEmulator  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - imported as tests.ingest.support (bench, IDEs)
    from tests.emulators.conftest_sheets import ServerThread, SheetsEmulator

__all__ = [
    "ServerThread",
    "SheetsEmulator",
    "WebhooksStayAnonymous",
    "data_keys",
    "decode_rows",
    "outbox_since",
]

PUBLIC_PREFIXES = ("/ingest/payments/",)
Headers = Sequence[tuple[str, bytes]]


class WebhooksStayAnonymous(httpx.Auth):
    """`Authorization: Bearer <key>` on every request except the public payment webhooks, which are sent
    without any credential (as the payment providers send them). A request's own `Authorization` wins."""

    def __init__(self, key: str) -> None:
        self.key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if not request.url.path.startswith(PUBLIC_PREFIXES) and "Authorization" not in request.headers:
            request.headers["Authorization"] = f"Bearer {self.key}"
        yield request


async def outbox_since(engine: AsyncEngine, after: int, schema: str = "ingest") -> tuple[int, list[Envelope]]:
    """Events written to the outbox after id `after` (the state they describe committed with them)."""
    async with engine.connect() as c:
        rows = (
            await c.execute(
                text(f"SELECT id, value, headers FROM {schema}.outbox WHERE id > :a ORDER BY id"),
                {"a": after},
            )
        ).all()
        envs = await decode_rows(c, rows)
    return (rows[-1].id if rows else after), envs


async def decode_rows(conn: AsyncConnection, rows: Sequence[Row[Any]]) -> list[Envelope]:
    """Outbox rows (`headers` jsonb, `value`) decoded as a consumer reads them: their sealed personal fields
    opened with the data keys of the vault in `conn`'s database."""
    records = [([(k, v.encode()) for k, v in r.headers], bytes(r.value)) for r in rows]
    for h, v in records:
        assert_sealed(h, v)
    keys = await data_keys(conn, records)
    return [decode(h, v, keys) for h, v in records]


def assert_sealed(headers: Headers, value: bytes) -> None:
    """Every personal field the record's data holds is ciphertext: its plaintext never reached the outbox."""
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


async def data_keys(conn: AsyncConnection, records: Iterable[tuple[Headers, bytes | None]]) -> Keys:
    """The vault's data keys (in `conn`'s database) for every subject whose sealed fields `records` hold,
    fetched at once: a plain dict for `decode`."""
    subjects = {s for h, v in records if (s := needs_opening(h, v)) is not None}
    return await vault().for_reading(conn, subjects) if subjects else {}


def fast_settings(
    bootstrap: str, database_url: str, sheets_url: str, sheet_id: str, **kw: Any
) -> IngestSettings:
    """Ingest settings for an in-process test host: quick polls and Sheets retries, no scheduled sheet poll
    (the test starts runs), against the local Sheets emulator. `kw` overrides or adds."""
    base: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap,
        "database_url": database_url,
        "runner_poll_timeout_ms": 100,
        "outbox_poll_s": 0.02,
        "sheets_api_endpoint": sheets_url,
        "sheets_spreadsheet_id": sheet_id,
        "sheets_max_retries": 2,
        "sheets_initial_backoff_s": 0.05,
        "sheets_max_backoff_s": 0.2,
        "sheets_quota_wait_max_s": 1.0,  # tests that exhaust the quota must not wait a real minute out
        "ingest_poll_interval_s": 3600,
    }
    return IngestSettings(**{**base, **kw})
