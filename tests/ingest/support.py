"""Helpers shared by the ingest tests: outbox reading and the Sheets emulator in a thread."""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import httpx
from arrears_ingest.settings import IngestSettings
from arrears_ingest.snapshot.service import open_data
from arrears_shared.cloudevents import Envelope
from arrears_shared.vault.keys import vault
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from vault_support import open_records, row_record

try:  # tests/ is not a package: the module is `ingest.support` under pytest's rootdir-relative import
    from emulators.conftest_sheets import ServerThread, SheetsEmulator  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - imported as tests.ingest.support (bench, IDEs)
    from tests.emulators.conftest_sheets import ServerThread, SheetsEmulator

__all__ = [
    "ServerThread",
    "SheetsEmulator",
    "WebhooksStayAnonymous",
    "outbox_since",
    "stored_snapshot",
]

PUBLIC_PREFIXES = ("/ingest/payments/",)


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
        envs = await open_records(c, [row_record(r) for r in rows])
    return (rows[-1].id if rows else after), envs


async def stored_snapshot(
    engine: AsyncEngine, account_id: str, schema: str = "ingest"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """An account's snapshot `data` as stored, and the same opened with its data key (as ingest reads it)."""
    async with engine.connect() as c:
        raw = (
            await c.execute(
                text(f"SELECT data FROM {schema}.snapshot WHERE account_id = :a"), {"a": account_id}
            )
        ).scalar_one()
        keys = await vault().for_reading(c, [account_id])
    return raw, open_data(keys, account_id, json.loads(json.dumps(raw)))


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
