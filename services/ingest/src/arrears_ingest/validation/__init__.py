"""Validation of PME master sheet rows (see `rows.py` for the accept/reject policy)."""

from .columns import ALL_COLUMNS, REQUIRED_COLUMNS, Col, SheetFormatError, column_aliases, map_header
from .rows import (
    AccountRow,
    Issue,
    Rejection,
    SheetResult,
    SheetValidator,
    ValidationConfig,
    validate_row,
    validate_sheet,
)

__all__ = [
    "ALL_COLUMNS",
    "REQUIRED_COLUMNS",
    "AccountRow",
    "Col",
    "Issue",
    "Rejection",
    "SheetFormatError",
    "SheetResult",
    "SheetValidator",
    "ValidationConfig",
    "column_aliases",
    "map_header",
    "validate_row",
    "validate_sheet",
]
