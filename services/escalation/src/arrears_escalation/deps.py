from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta

from arrears_shared.clock import Clock
from arrears_shared.money import RateTable, packaged_rates, rates_from_file

from .collection.targets import KpiTarget, make_targets
from .reports.models import ReportsConfig
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
    targets: list[KpiTarget] = field(default_factory=lambda: make_targets(1.0, 0.85, 0.40))
    reports: ReportsConfig = field(default_factory=ReportsConfig)
    console_url: str = ""  # links in notifications
    calendars_republish: timedelta = timedelta(days=1)

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
            targets=make_targets(
                s.escalation_target_days_in_arrears_coverage,
                s.escalation_target_automated_notification_rate,
                s.escalation_target_recovery_rate,
                s.escalation_kpi_targets,
                s.escalation_kpi_near,
            ),
            reports=ReportsConfig(
                enabled=s.escalation_reports_enabled,
                hour_utc=s.escalation_reports_hour_utc,
                weekday=s.escalation_reports_weekday,
                recipients=[a.strip() for a in s.escalation_reports_recipients.split(",") if a.strip()],
                # the staff mailbox of the notification e-mails (notifications/mailer.py)
                sender=s.escalation_notify_sender,
                gmail_api_endpoint=s.escalation_notify_gmail_api_endpoint,
                gmail_token=(
                    s.escalation_notify_gmail_token.get_secret_value()
                    if s.escalation_notify_gmail_token
                    else None
                ),
                gmail_credentials_file=s.escalation_notify_gmail_credentials_file,
                console_url=s.escalation_reports_console_url or s.escalation_console_url,
                max_attempts=s.escalation_reports_email_max_attempts,
            ),
            console_url=s.escalation_console_url,
            calendars_republish=timedelta(seconds=s.escalation_calendars_republish_s),
        )
