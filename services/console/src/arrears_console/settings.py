"""Console settings (all `ARREARS_*` variables)."""

from __future__ import annotations

from arrears_shared.settings import MoneySettings, ServiceSettings
from pydantic import Field


class ConsoleSettings(ServiceSettings, MoneySettings):
    service_name: str = "console"
    http_port: int = 8080

    console_dlq_group: str = Field("console-dlq", description="Consumer group of the DLQ view's reader")
    console_dlq_batch: int = Field(500, gt=0, description="Max DLQ records read per poll")
    console_refresh_s: int = Field(5, gt=0, description="Auto-refresh interval of the web UI (seconds)")
