"""Reads the PME master sheet's values through gspread (blocking I/O, run in a worker thread).

One `spreadsheets.values.get` of the whole worksheet (a consistent snapshot of the sheet: reading it in
row ranges could skip or repeat rows moved by an edit between two requests), sent by gspread's HTTP client
(credentials, endpoint, 429/5xx backoff). The JSON body is parsed lazily, row by row (`ijson`), as the run
consumes it in chunks: a 100k-row sheet never exists as 2M Python strings at once, only its ~20 MB body.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import Iterator

import gspread
import ijson
from gspread.urls import SPREADSHEET_VALUES_URL
from gspread.utils import absolute_range_name, quote

from .. import metrics, quota
from ..settings import IngestSettings
from ..sheets.client import open_sheets_client

log = logging.getLogger(__name__)
SOURCE = "sheet"


class SheetNotConfigured(RuntimeError):
    """ARREARS_SHEETS_SPREADSHEET_ID is not set."""


class SheetReader:
    """One gspread client per process, created on first use (credentials errors surface as a failed run)."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self._client: gspread.Client | None = None
        self._lock = threading.Lock()
        self.quota_waits = 0
        self.quota_waited_s = 0.0

    def _quota_wait(self, seconds: float) -> None:
        """Before each wait for the Sheets quota (from the reading thread): the source is degraded meanwhile
        (the gauge goes back to 0 when the run succeeds)."""
        self.quota_waits += 1
        self.quota_waited_s += seconds
        quota.record(seconds)  # charged to the run whose read waits (not to a concurrent write-back)
        metrics.DEGRADED.labels(SOURCE).set(1)
        metrics.QUOTA_WAIT.labels(SOURCE).inc(seconds)
        log.warning(
            "Sheets quota exhausted (429); waiting it out, source degraded meanwhile",
            extra={"wait_s": round(seconds, 1), "waits": self.quota_waits},
        )

    @property
    def configured(self) -> bool:
        return bool(self.settings.sheets_spreadsheet_id)

    def _client_for_thread(self) -> gspread.Client:
        with self._lock:
            if self._client is None:
                self._client = open_sheets_client(
                    api_endpoint=self.settings.sheets_api_endpoint,
                    credentials_file=self.settings.sheets_credentials_file,
                    timeout_s=self.settings.sheets_timeout_s,
                    backoff=True,
                    max_retries=self.settings.sheets_max_retries,
                    initial_backoff_s=self.settings.sheets_initial_backoff_s,
                    max_backoff_s=self.settings.sheets_max_backoff_s,
                    quota_wait_max_s=self.settings.sheets_quota_wait_max_s,
                    on_quota_wait=self._quota_wait,
                )
            return self._client

    def worksheet(self) -> gspread.Worksheet:
        """The configured worksheet (blocking: one `spreadsheets.get`)."""
        if not self.settings.sheets_spreadsheet_id:
            raise SheetNotConfigured("ARREARS_SHEETS_SPREADSHEET_ID is not set")
        client = self._client_for_thread()
        spreadsheet = client.open_by_key(self.settings.sheets_spreadsheet_id)
        return spreadsheet.worksheet(self.settings.sheets_worksheet)

    def read_blocking(self) -> Iterator[list[str]]:
        """The worksheet's rows (header first) as `get_all_values()` would return them, unpadded: the
        request completes here; the rows are parsed from the body as the iterator is consumed."""
        ws = self.worksheet()
        url = SPREADSHEET_VALUES_URL % (ws.spreadsheet_id, quote(absolute_range_name(ws.title)))
        body = ws.client.request("get", url).content
        return _rows(body)

    async def read(self) -> Iterator[list[str]]:
        return await asyncio.to_thread(self.read_blocking)


def _rows(body: bytes) -> Iterator[list[str]]:
    # cells are strings (FORMATTED_VALUE); validation applies str() to anything else
    return ijson.items(io.BytesIO(body), "values.item", use_float=True)  # type: ignore[no-any-return]
