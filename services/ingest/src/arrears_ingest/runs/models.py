"""API bodies of the runs and rejects endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class RunSummary(BaseModel):
    id: str
    source: str
    trigger: str
    started: datetime
    finished: datetime | None = None
    rows: int = Field(0, description="Non-blank data rows read (header excluded)")
    accepted: int = 0
    rejected: int = Field(0, description="Rows rejected (a row may have several reasons)")
    unchanged: int = 0
    created: int = 0
    updated: int = 0
    removed: int = 0
    warnings: int = Field(
        0,
        description="Non-fatal problems (invalid phone/email dropped, bad flags...) in rows validated by this run (rows whose cells did not change since the last run are not re-validated)",
    )
    status: Literal["running", "succeeded", "failed"]
    error: str | None = None
    quota_waited_s: float = Field(
        0.0, description="Seconds this run waited out the Sheets quota (429s; the quota refills per minute)"
    )
    degraded: bool = Field(
        False,
        description="The sheet source was degraded during this run: it waited for the Sheets quota, or the "
        "sheet could not be read (the `arrears_ingest_degraded` gauge was 1)",
    )


class RunList(BaseModel):
    items: list[RunSummary]


RejectSource = Literal["sheet", "upload", "payment"]


class RejectItem(BaseModel):
    source: RejectSource
    batch_id: str
    row_number: int
    account_id: str | None
    column: str | None
    value: str | None = Field(description="Offending value, PII masked and truncated")
    reason: str
    fix: str | None = Field(None, description="What to change in the sheet (or payment) to clear this reject")
    balance_minor: int | None
    currency: str | None
    rejected_at: datetime


class RejectList(BaseModel):
    source: str
    total: int
    items: list[RejectItem]


class SourceHealth(BaseModel):
    source: str
    state: Literal["ok", "degraded", "never_run", "disabled"]
    degraded_since: datetime | None = None
    last_success: datetime | None = None
    last_error: str | None = None

    def detail(self) -> str:
        if self.state == "degraded":
            return f"degraded since {self.degraded_since.isoformat() if self.degraded_since else '?'}: {self.last_error}"
        if self.state == "ok":
            return f"ok, last success {self.last_success.isoformat() if self.last_success else '?'}"
        if self.state == "disabled":
            return "disabled (ARREARS_SHEETS_SPREADSHEET_ID not set)"
        return "no run yet"
