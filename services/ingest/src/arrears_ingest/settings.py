"""Ingest settings: the PME master sheet source and validation defaults (all `ARREARS_*` variables)."""

from __future__ import annotations

from typing import Literal

from arrears_shared.settings import ServiceSettings
from arrears_shared.webhook_dedupe import WebhookDedupeSettings
from pydantic import Field, SecretStr, field_validator

ContactFact = Literal["last_contact", "last_reply", "intent", "promise"]
# sheet header of each contact fact written back (ARREARS_INGEST_WRITEBACK_CONTACT_COLUMNS overrides these)
DEFAULT_CONTACT_COLUMNS: dict[ContactFact, str] = {
    "last_contact": "Last Contact",
    "last_reply": "Last Reply",
    "intent": "Intent",
    "promise": "Promise",
}


class IngestSettings(ServiceSettings, WebhookDedupeSettings):
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
    sheets_max_retries: int = Field(
        4, ge=0, description="Retries of a Sheets request answered 408/429/5xx (exponential backoff + jitter)"
    )
    sheets_initial_backoff_s: float = Field(1.0, gt=0, description="First retry delay; doubles per retry")
    sheets_max_backoff_s: float = Field(16.0, gt=0, description="Longest retry delay")
    sheets_timeout_s: float = Field(30.0, gt=0, description="Per-request timeout of Sheets API calls")
    sheets_quota_wait_max_s: float = Field(
        300.0,
        gt=0,
        description="Longest a Sheets request waits out 429s (the quota refills per minute) before the run"
        " fails; the source is reported degraded while it waits",
    )
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
    ingest_column_map: dict[str, str] = Field(
        default_factory=dict,
        description='Extra header names, JSON {"sheet header": "canonical column"}, e.g. '
        '{"Acct #": "Account ID", "Amount Owed": "Balance"}; matched case/space/punctuation-insensitively',
    )
    ingest_chunk_rows: int = Field(
        2500,
        ge=100,
        description="Rows validated and committed per transaction of a run (sheet or upload); bounds the "
        "memory of a run and lets validation overlap the database writes",
    )
    ingest_validation_workers: int = Field(
        1,
        ge=0,
        description="Worker processes that validate rows (CPU-bound) beside the service process; 0 = "
        "validate in a thread of the service process",
    )
    ingest_upload_max_bytes: int = Field(
        50_000_000, gt=0, description="Largest CSV/XLSX upload accepted by POST /ingest/upload (413 above)"
    )
    ingest_writeback: bool = Field(
        True,
        description="Write Arrears Status / Arrears Reason back to the sheet after each sheet run, and each "
        "account's contact facts (last contact, last reply, intent, promise) as they change",
    )
    ingest_writeback_retry_s: float = Field(
        30.0, gt=0, description="Seconds between attempts to replay queued sheet write-backs"
    )
    ingest_writeback_ranges_per_request: int = Field(
        500, gt=0, description="Ranges per values:batchUpdate request of the write-back"
    )
    ingest_writeback_contact_columns: dict[ContactFact, str] = Field(
        default_factory=lambda: dict(DEFAULT_CONTACT_COLUMNS),
        description="Sheet headers of the contact facts written back from message-sent / reply-received, "
        'JSON merged over the defaults {"last_contact": "Last Contact", "last_reply": "Last Reply", '
        '"intent": "Intent", "promise": "Promise"}; "" switches a fact off. Missing headers are added after '
        "the last one",
    )
    ingest_writeback_contact_delay_s: float = Field(
        2.0,
        ge=0,
        description="Seconds the write-back waits after new contact facts arrive before it flushes, so a "
        "burst of events goes to the sheet in one values:batchUpdate",
    )
    ingest_writeback_contact_interval_s: float = Field(
        15.0,
        ge=0,
        description="Least seconds between two flushes started by new contact facts: a steady trickle of "
        "sends and replies costs at most 60/this flushes a minute (each: 3 read requests, 1 write request), "
        "well inside the Sheets per-user quotas",
    )
    sheets_writes_per_minute: int = Field(
        50,
        gt=0,
        description="Client-side cap on Sheets write requests per minute (Google allows 60 per user)",
    )
    payments_stripe_webhook_secret: SecretStr | None = Field(
        None, description="Stripe endpoint signing secret (whsec_...); unset = Stripe webhook disabled (404)"
    )
    payments_stripe_tolerance_s: int = Field(
        300, gt=0, description="Max age of a Stripe-Signature timestamp; older deliveries are refused"
    )
    payments_webhook_secret: SecretStr | None = Field(
        None,
        description="Standard Webhooks secret (whsec_<base64>) of the generic payment webhook; "
        "unset = generic webhook disabled (404)",
    )

    @field_validator("ingest_writeback_contact_columns", mode="after")
    @classmethod
    def _merge_contact_columns(cls, value: dict[ContactFact, str]) -> dict[ContactFact, str]:
        return {**DEFAULT_CONTACT_COLUMNS, **{k: v.strip() for k, v in value.items()}}

    def contact_columns(self) -> dict[ContactFact, str]:
        """The contact facts written back (fact -> sheet header); empty when write-back is off."""
        if not (self.ingest_writeback and self.sheets_spreadsheet_id):
            return {}
        return {k: v for k, v in self.ingest_writeback_contact_columns.items() if v}
