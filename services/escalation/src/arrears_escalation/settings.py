from __future__ import annotations

from arrears_shared.settings import ServiceSettings
from pydantic import Field


class EscalationSettings(ServiceSettings):
    escalation_no_response_after_s: float = Field(
        7 * 86400.0, description="Open a no_response case this long after a final notice with no reply"
    )
    escalation_tick_s: float = Field(1.0, description="Seconds between timer-loop ticks")
    escalation_timer_batch: int = Field(500, description="Max due timers per tick (one transaction)")
    escalation_clock_offset_s: float = Field(0.0, description="Shift 'now' (demos only)")
