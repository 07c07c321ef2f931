"""Pydantic models: the emulator's configuration, its control API bodies and the Sheets API request bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CellIn = str | int | float | bool | None
"""A cell value as the Sheets API accepts it in ``values`` (``None`` leaves the cell unchanged)."""

ValueInputOption = Literal["RAW", "USER_ENTERED"]
MajorDimension = Literal["ROWS", "COLUMNS"]


class QuotaLimits(BaseModel):
    """Per-minute request quotas. ``None`` for one limit = unlimited; ``lifted`` switches all of them off.

    Google meters read and write requests separately, per project and per user per project; the emulator
    has one project and takes the bearer token (or ``key`` parameter) as the user identity.
    """

    read_requests_per_minute_per_project: int | None = Field(default=300, ge=0)
    read_requests_per_minute_per_user: int | None = Field(default=60, ge=0)
    write_requests_per_minute_per_project: int | None = Field(default=300, ge=0)
    write_requests_per_minute_per_user: int | None = Field(default=60, ge=0)
    window_s: float = Field(default=60.0, gt=0, description="length of the sliding quota window")
    lifted: bool = False
    send_retry_after: bool = Field(
        default=False,
        description="add a Retry-After header to 429s (the real Sheets API does not send one)",
    )


def _one_empty_sheet() -> dict[str, list[list[Any]]]:
    return {"Sheet1": []}


class SpreadsheetSeed(BaseModel):
    """Body of ``POST /_emulator/spreadsheets``: create or replace a whole spreadsheet.

    ``sheets`` maps each sheet title (in order) to its rows; a cell is a string, number, boolean or null
    (empty). Cells are typed ``Any`` here and checked while loading, which is several times faster than
    a union validator on 100k-row sheets.
    """

    spreadsheet_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    title: str = "Untitled spreadsheet"
    sheets: dict[str, list[list[Any]]] = Field(default_factory=lambda: _one_empty_sheet())
    value_input_option: ValueInputOption = "RAW"
    min_rows: int = Field(default=1000, ge=1, description="grid rows at least (Google's default is 1000)")
    min_columns: int = Field(default=26, ge=1, description="grid columns at least (Google's default is 26)")


class SheetsEmulatorConfig(BaseModel):
    """Configuration of one Sheets emulator instance."""

    limits: QuotaLimits = Field(default_factory=QuotaLimits)
    require_auth: bool = Field(default=True, description="401 for API calls without credentials")
    project_number: str = "000000000000"
    max_cells_per_spreadsheet: int = Field(default=10_000_000, ge=1)
    default_timeout_fault_s: float = Field(default=30.0, gt=0)
    spreadsheets: list[SpreadsheetSeed] = Field(default_factory=list)


class FaultSpec(BaseModel):
    """Body of ``POST /_emulator/faults``. Faults apply to Sheets API calls only, never to ``/_emulator``.

    * ``error``: the next ``count`` API requests answer ``status`` (500, 503, 429, ...) with Google's body;
    * ``timeout``: the next ``count`` requests hang ``seconds`` (released early by reset/clear) and then
      answer 504 — a client with a shorter timeout sees its own timeout;
    * ``slow``: the next ``count`` requests (``count`` null = every request until cleared) wait ``ms``
      before being served;
    * ``outage``: while ``enabled``, every API request answers 503 UNAVAILABLE.
    """

    kind: Literal["error", "timeout", "slow", "outage"]
    count: int | None = Field(default=1, ge=0)
    status: int = Field(default=503, ge=400, le=599)
    ms: int = Field(default=0, ge=0)
    seconds: float | None = Field(default=None, gt=0)
    enabled: bool = True


class FaultState(BaseModel):
    outage: bool
    pending_errors: list[tuple[int, int]] = Field(description="(status, remaining requests) in order")
    pending_timeouts: int
    timeout_s: float
    slow_ms: int
    slow_remaining: int | None


class SheetsStats(BaseModel):
    requests: int = 0
    reads: int = 0
    writes: int = 0
    throttled: int = 0
    throttled_reads: int = 0
    throttled_writes: int = 0
    faults_injected: int = 0
    unauthenticated: int = 0
    by_method: dict[str, int] = Field(default_factory=dict)


class SpreadsheetSummary(BaseModel):
    spreadsheet_id: str
    title: str
    sheets: dict[str, int] = Field(description="sheet title -> number of data rows")


class SpreadsheetDump(BaseModel):
    spreadsheet_id: str
    title: str
    sheets: dict[str, list[list[Any]]]


# --- Sheets API v4 request bodies (camelCase as on the wire) ---------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ValueRangeIn(_Wire):
    range: str | None = None
    majorDimension: MajorDimension | None = None  # noqa: N815 - wire name
    values: list[list[CellIn]] | None = None


class BatchUpdateValuesIn(_Wire):
    valueInputOption: ValueInputOption | None = None  # noqa: N815
    data: list[ValueRangeIn] = Field(default_factory=list)
    includeValuesInResponse: bool | None = None  # noqa: N815
    responseValueRenderOption: str | None = None  # noqa: N815
    responseDateTimeRenderOption: str | None = None  # noqa: N815


class BatchClearValuesIn(_Wire):
    ranges: list[str] = Field(default_factory=list)


class BatchUpdateSpreadsheetIn(_Wire):
    requests: list[dict[str, Any]] = Field(default_factory=list)
    includeSpreadsheetInResponse: bool | None = None  # noqa: N815
