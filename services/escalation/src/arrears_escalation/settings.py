from __future__ import annotations

from arrears_shared.settings import MoneySettings, ServiceSettings
from pydantic import Field


class EscalationSettings(ServiceSettings, MoneySettings):
    escalation_no_response_after_s: float = Field(
        7 * 86400.0, description="Open a no_response case this long after a final notice with no reply"
    )
    escalation_tick_s: float = Field(1.0, description="Seconds between timer-loop ticks")
    escalation_timer_batch: int = Field(500, description="Max due timers per tick (one transaction)")
    escalation_clock_offset_s: float = Field(0.0, description="Shift 'now' (demos only)")
    escalation_rules_file: str | None = Field(
        None, description="YAML rule set replacing the packaged defaults (rules/default_rules.yaml)"
    )
    escalation_disabled_rules: str = Field("", description="Comma-separated rule ids to switch off")
    escalation_thresholds: str = Field(
        "",
        description='JSON {"<rule id>.<condition>": value} overriding rule conditions, '
        'e.g. {"high_value.min_balance_minor": 1000000, "broken_promise.grace_days": 2} '
        "(min_balance_minor: minor units of the reporting currency, see ARREARS_FX_RATES_FILE)",
    )
    escalation_agents: str = Field(
        "[]",
        description='JSON list of agents for assignment: [{"id": "ana", "team": "collectors"}, ...]; '
        "tasks go round-robin among the active agents of their team (none = the team's unassigned queue)",
    )
    escalation_priority_teams: str = Field(
        '{"critical": "supervisors"}',
        description="JSON {priority: team}: tasks of that priority go to that team whatever the rule says",
    )
    escalation_supervisor_team: str = Field("supervisors", description="Team that receives escalated tasks")
    escalation_supervisor_after_s: float = Field(
        4 * 3600.0, ge=0, description="A task still open this long after its SLA breach goes to a supervisor"
    )
    escalation_metrics_hour_utc: int = Field(
        1,
        ge=0,
        le=23,
        description="UTC hour after which the previous day's collection metrics are snapshotted",
    )
