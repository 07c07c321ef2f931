"""Google Sheets API v4 emulator: ``create_app(config)`` returns the FastAPI app."""

from .app import create_app
from .models import FaultSpec, QuotaLimits, SheetsEmulatorConfig, SpreadsheetSeed

__all__ = ["FaultSpec", "QuotaLimits", "SheetsEmulatorConfig", "SpreadsheetSeed", "create_app"]
