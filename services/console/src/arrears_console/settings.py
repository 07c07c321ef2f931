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
    console_aging_snapshot_check_s: int = Field(
        300,
        gt=0,
        description="Seconds between checks for today's aging snapshot (taken once per UTC day, and at start "
        "when missing)",
    )

    console_segmenter_url: str = Field(
        "http://segmenter:8080",
        description="Segmenter API the console calls on behalf of the signed-in person",
    )
    console_escalation_url: str = Field(
        "http://escalation:8080",
        description="Escalation API the console calls on behalf of the signed-in person",
    )
    console_ingest_url: str = Field(
        "http://ingest:8080", description="Ingest API the console calls on behalf of the signed-in person"
    )
    console_responses_url: str = Field(
        "http://responses:8080",
        description="Responses API the console calls on behalf of the signed-in person",
    )
    console_dispatcher_urls: dict[str, str] = Field(
        default_factory=dict,
        description="Dispatcher APIs (provider health) the console calls on behalf of the signed-in person, as"
        ' JSON {"dispatcher-sms": "http://..."}; the dispatcher of a registered channel not named here is'
        " called at http://<dispatcher>:8080",
    )
    console_dlq_replay_max: int = Field(
        100,
        gt=0,
        description="Most dead letters one replay from the console may send (narrow the filter above)",
    )
    console_upstream_timeout_s: float = Field(
        15.0, description="Timeout of one call to another service's API"
    )
