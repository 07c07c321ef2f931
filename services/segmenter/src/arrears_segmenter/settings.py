from __future__ import annotations

from arrears_shared.settings import MoneySettings, ServiceSettings
from pydantic import Field


class SegmenterSettings(ServiceSettings, MoneySettings):
    segmenter_tick_s: float = Field(1.0, description="Seconds between timer-loop ticks")
    segmenter_timer_batch: int = Field(500, description="Max due timers handled per tick (one transaction)")
    segmenter_timer_workers: int = Field(
        2,
        ge=1,
        description="Concurrent timer-loop workers per replica (each its own transaction; they share the due "
        "timers through SKIP LOCKED as replicas do, so one's Postgres round trips overlap another's CPU)",
    )
    segmenter_policy_path: str | None = Field(
        None, description="YAML dunning policy; default: the packaged policies/default.yaml"
    )
    segmenter_aging_boundaries: str = Field(
        "30,60,90,120", description="Upper bounds (days) of the 1-30/31-60/61-90/91-120 buckets"
    )
    segmenter_compliance_rules_path: str | None = Field(
        None, description="YAML compliance rule table; default: arrears_shared.compliance.DEFAULT_RULES"
    )
    segmenter_paid_claim_pause_days: int = Field(
        7, description="Pause after a 'paid' claim without a date, to let the payment show up"
    )
    segmenter_balance_bands: str = Field(
        "10000,100000,1000000",
        description="Upper bounds of the low / medium / high balance bands, in minor units of the reporting "
        "currency (ARREARS_FX_RATES_FILE; balances are converted first); above: very_high",
    )
    segmenter_clock_offset_s: float = Field(0.0, description="Shift 'now' (demos only)")
