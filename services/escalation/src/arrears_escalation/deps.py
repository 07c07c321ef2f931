from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta

from arrears_shared.clock import Clock
from arrears_shared.money import RateTable, packaged_rates, rates_from_file

from .rules.models import RuleSet
from .rules.service import load_rules
from .settings import EscalationSettings
from .tasks.assignment import Agent


@dataclass
class Deps:
    clock: Clock = field(default_factory=Clock)
    no_response_after: timedelta = timedelta(days=7)
    timer_batch: int = 500
    rules: RuleSet = field(default_factory=load_rules)
    agents: list[Agent] = field(default_factory=list)
    priority_teams: dict[str, str] = field(default_factory=lambda: {"critical": "supervisors"})
    supervisor_team: str = "supervisors"
    supervisor_after: timedelta = timedelta(hours=4)
    rates: RateTable = field(default_factory=packaged_rates)  # money conditions: reporting currency

    @classmethod
    def from_settings(cls, s: EscalationSettings) -> Deps:
        return cls(
            clock=Clock(offset_s=s.escalation_clock_offset_s),
            no_response_after=timedelta(seconds=s.escalation_no_response_after_s),
            timer_batch=s.escalation_timer_batch,
            rules=load_rules(s.escalation_rules_file, s.escalation_disabled_rules, s.escalation_thresholds),
            agents=[Agent.model_validate(a) for a in json.loads(s.escalation_agents or "[]")],
            priority_teams=json.loads(s.escalation_priority_teams or "{}"),
            supervisor_team=s.escalation_supervisor_team,
            supervisor_after=timedelta(seconds=s.escalation_supervisor_after_s),
            rates=rates_from_file(s.fx_rates_file),
        )
