"""Ingest settings: the PME master sheet source and validation defaults (all `ARREARS_*` variables)."""

from __future__ import annotations

from typing import Literal

from arrears_shared.settings import ServiceSettings
from pydantic import Field


class IngestSettings(ServiceSettings):
    service_name: str = "ingest"
    http_port: int = 8001

    sheets_api_endpoint: str | None = Field(
        None,
        description="Base URL of the Sheets API (None = https://sheets.googleapis.com); "
        "point at the local emulator in dev/tests",
    )
    sheets_credentials_file: str | None = Field(
        None, description="Service-account JSON for the Sheets API (None = anonymous, emulator only)"
    )
    sheets_spreadsheet_id: str | None = Field(
        None, description="Spreadsheet id of the PME master sheet (None = sheet polling disabled)"
    )
    sheets_worksheet: str = Field("Accounts", description="Worksheet (tab) holding the accounts")
    ingest_poll_interval_s: float = Field(
        300.0, gt=0, description="Seconds between sheet polls (the first poll runs at start-up)"
    )
    ingest_default_region: str = Field(
        "US", description="ISO 3166-1 region used to parse phone numbers without a country code"
    )
    ingest_date_order: Literal["US", "EU"] = Field(
        "US", description="How to read ambiguous dd/dd/yyyy dates: US = MM/DD/YYYY, EU = DD/MM/YYYY"
    )
    ingest_default_currency: str = Field(
        "USD", pattern=r"^[A-Z]{3}$", description="Currency of rows with an empty Currency column"
    )
