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
                    timeout_s=self.settings.sheets_timeout_s,
                    backoff=True,
                    max_retries=self.settings.sheets_max_retries,
                    initial_backoff_s=self.settings.sheets_initial_backoff_s,
                    max_backoff_s=self.settings.sheets_max_backoff_s,
                )
            return self._client

    def worksheet(self) -> gspread.Worksheet:
        """The configured worksheet (blocking: one `spreadsheets.get`)."""
        if not self.settings.sheets_spreadsheet_id:
            raise SheetNotConfigured("ARREARS_SHEETS_SPREADSHEET_ID is not set")
        client = self._client_for_thread()
        spreadsheet = client.open_by_key(self.settings.sheets_spreadsheet_id)
        return spreadsheet.worksheet(self.settings.sheets_worksheet)

    def read_blocking(self) -> list[list[str]]:
        return [[str(c) for c in row] for row in self.worksheet().get_all_values()]

    async def read(self) -> list[list[str]]:
        return await asyncio.to_thread(self.read_blocking)
