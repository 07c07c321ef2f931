from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from .clock import Clock
from .settings import EscalationSettings


@dataclass
class Deps:
    clock: Clock = field(default_factory=Clock)
    no_response_after: timedelta = timedelta(days=7)
    timer_batch: int = 500

    @classmethod
    def from_settings(cls, s: EscalationSettings) -> Deps:
        return cls(
            clock=Clock(offset_s=s.escalation_clock_offset_s),
            no_response_after=timedelta(seconds=s.escalation_no_response_after_s),
            timer_batch=s.escalation_timer_batch,
        )
