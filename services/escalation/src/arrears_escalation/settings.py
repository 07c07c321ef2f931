from __future__ import annotations

from arrears_shared.settings import MoneySettings, ServiceSettings
from pydantic import Field, SecretStr


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
    escalation_contacts_import_max_bytes: int = Field(
        5 * 1024 * 1024,
        ge=1024,
        description="Largest manual tracking sheet `POST /contacts/import` accepts (bytes)",
    )
    escalation_contacts_import_max_rows: int = Field(
        5000, ge=1, description="Most rows (below the header) one manual tracking sheet import may hold"
    )
    # -- KPI targets and scheduled reports (docs/responses-and-escalation.md "KPIs, targets and reports") --
    escalation_target_days_in_arrears_coverage: float = Field(
        1.0, ge=0, le=1, description="Target of days-in-arrears coverage (seed 001: 100 %), a ratio"
    )
    escalation_target_automated_notification_rate: float = Field(
        0.85, ge=0, le=1, description="Target of the automated notification rate (seed 001: 85 %), a ratio"
    )
    escalation_target_recovery_rate: float = Field(
        0.40, ge=0, le=1, description="Target of the collection recovery rate (seed 001: 40 %), a ratio"
    )
    escalation_kpi_targets: str = Field(
        "",
        description='JSON {"<metric>": ratio} adding targets for other KPIs, e.g. {"promise_fulfilment": 0.7}',
    )
    escalation_kpi_near: float = Field(
        0.10,
        ge=0,
        le=1,
        description="A figure below its target by at most this fraction of the target is `near`, lower is "
        "`missed`",
    )
    escalation_reports_enabled: bool = Field(
        True, description="Generate the weekly KPI report and the monthly scorecard on schedule"
    )
    escalation_reports_hour_utc: int = Field(
        9, ge=0, le=23, description="UTC hour from which the reports of a period just ended are generated"
    )
    escalation_reports_weekday: int = Field(
        0,
        ge=0,
        le=6,
        description="Weekday (0 = Monday) on which the weekly KPI report of the last week is due",
    )
    escalation_reports_recipients: str = Field(
        "",
        description="Distribution list of the reports: comma-separated e-mail addresses (empty = not sent); "
        "sent from the staff mailbox of the notification e-mails (ARREARS_ESCALATION_NOTIFY_SENDER and its "
        "ARREARS_ESCALATION_NOTIFY_GMAIL_* credentials)",
    )
    escalation_reports_console_url: str = Field(
        "", description="Console base URL put in the report e-mail as the download link (empty = none)"
    )
    escalation_reports_email_max_attempts: int = Field(
        5,
        ge=1,
        description="Attempts to e-mail a report before it is marked failed (an alert; resend by hand)",
    )
    # -- business hours, SLA breach notifications (docs/responses-and-escalation.md "Business hours and SLAs") --
    escalation_console_url: str = Field(
        "", description="Console base URL for links in notifications (empty = relative links, console only)"
    )
    escalation_notify_email: bool = Field(
        False,
        description="Email SLA-breach notifications to the assignee and the team lead (their addresses are "
        "the team's `emails`) through the Gmail API",
    )
    escalation_notify_sender: str = Field("", description="Mailbox notification emails are sent from (From:)")
    escalation_notify_gmail_api_endpoint: str | None = Field(
        None, description="Gmail API root for notification emails (e.g. the emulator); None = Google's own"
    )
    escalation_notify_gmail_token: SecretStr | None = Field(
        None, description="Static OAuth bearer token of the notification mailbox (emulator / short tests)"
    )
    escalation_notify_gmail_credentials_file: str | None = Field(
        None,
        description="Google service-account JSON acting as the notification sender (domain-wide delegation)",
    )
    escalation_notify_poll_s: float = Field(
        5.0, gt=0, description="Seconds between notification-email rounds"
    )
    escalation_notify_max_attempts: int = Field(
        10,
        ge=1,
        description="Attempts to email a notification before it is marked failed (it stays on the console)",
    )
    escalation_calendars_republish_s: float = Field(
        86400.0,
        gt=0,
        description="Every team calendar is published again on `team-calendars` this often (new subscribers)",
    )
