"""Prometheus metrics of escalation (labels never carry account ids or names)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CASES = Counter("arrears_escalation_cases_opened_total", "Cases opened", ["reason", "priority"])
TASKS = Counter("arrears_escalation_tasks_created_total", "Tasks created", ["kind", "priority"])
SLA_BREACHES = Counter("arrears_escalation_sla_breaches_total", "Tasks past their SLA", ["kind", "priority"])
SLA_ESCALATIONS = Counter(
    "arrears_escalation_sla_escalations_total", "Breached tasks escalated to a supervisor", ["kind"]
)
PROMISES = Counter("arrears_escalation_promises_total", "Promises to pay by outcome", ["outcome"])
OVERRIDES = Counter("arrears_escalation_overrides_total", "Manual overrides requested", ["action", "role"])
AUTH_FAILURES = Counter("arrears_escalation_auth_failures_total", "Refused API calls", ["reason"])
COLLECTION = Gauge(
    "arrears_collection_metric", "Collection metrics of the latest daily snapshot (overall)", ["metric"]
)
NOTIFICATIONS = Counter(
    "arrears_escalation_notifications_total", "Notifications created for people", ["kind", "why"]
)
NOTIFICATION_EMAILS = Counter(
    "arrears_escalation_notification_emails_total",
    "Notification emails by outcome (sent, reconciled, in_doubt, failed)",
    ["outcome"],
)
REPORTS = Counter("arrears_escalation_reports_generated_total", "Scheduled reports generated", ["kind"])
REPORT_EMAILS = Counter(
    "arrears_escalation_report_emails_total",
    "Report e-mails to the distribution list by outcome",
    ["outcome"],
)
