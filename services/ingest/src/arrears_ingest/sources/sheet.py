"""Reads the PME master sheet's values through gspread (blocking I/O, run in a worker thread)."""

from __future__ import annotations

import asyncio
import threading

import gspread

from ..settings import IngestSettings
from ..sheets.client import open_sheets_client


class SheetNotConfigured(RuntimeError):
    """ARREARS_SHEETS_SPREADSHEET_ID is not set."""


class SheetReader:
    """One gspread client per process, created on first use (credentials errors surface as a failed run)."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self._client: gspread.Client | None = None
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        return bool(self.settings.sheets_spreadsheet_id)

    def _client_for_thread(self) -> gspread.Client:
        with self._lock:
            if self._client is None:
                self._client = open_sheets_client(
                    api_endpoint=self.settings.sheets_api_endpoint,
                    credentials_file=self.settings.sheets_credentials_file,
                    timeout_s=30,
                    backoff=True,
                    max_retries=3,
                    initial_backoff_s=1.0,
                    max_backoff_s=8.0,
                )
            return self._client

    def read_blocking(self) -> list[list[str]]:
        if not self.settings.sheets_spreadsheet_id:
            raise SheetNotConfigured("ARREARS_SHEETS_SPREADSHEET_ID is not set")
        client = self._client_for_thread()
        spreadsheet = client.open_by_key(self.settings.sheets_spreadsheet_id)
        worksheet = spreadsheet.worksheet(self.settings.sheets_worksheet)
        return [[str(c) for c in row] for row in worksheet.get_all_values()]

    async def read(self) -> list[list[str]]:
        return await asyncio.to_thread(self.read_blocking)
