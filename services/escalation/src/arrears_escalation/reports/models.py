"""Scheduled reports (seed 003 "Weekly Automations" / "Monthly Automations"): the weekly KPI report and the
monthly scorecard — kinds, periods, the stored row and its e-mail configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel

Kind = Literal["weekly_kpi", "monthly_scorecard"]
KINDS: tuple[Kind, ...] = ("weekly_kpi", "monthly_scorecard")
TITLES: dict[str, str] = {"weekly_kpi": "Weekly KPI report", "monthly_scorecard": "Monthly scorecard"}
EmailState = Literal["pending", "sending", "sent", "failed", "none"]


def report_id(kind: str, start: date) -> str:
    return f"{kind}-{start.isoformat()}"


def last_period(kind: str, today: date) -> tuple[date, date]:
    """The latest period of `kind` that has ended before `today`: the last ISO week (Monday-Sunday) or the
    last calendar month."""
    if kind == "weekly_kpi":
        start = today - timedelta(days=today.weekday() + 7)
        return start, start + timedelta(days=6)
    end = today.replace(day=1) - timedelta(days=1)
    return end.replace(day=1), end


def period_of(kind: str, start: date) -> tuple[date, date]:
    """The period of `kind` that starts on `start` (which must be a Monday / the 1st of a month)."""
    if kind == "weekly_kpi":
        if start.weekday() != 0:
            raise ValueError("a weekly report starts on a Monday")
        return start, start + timedelta(days=6)
    if start.day != 1:
        raise ValueError("a monthly scorecard starts on the 1st of a month")
    nxt = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start, nxt - timedelta(days=1)


@dataclass
class ReportsConfig:
    enabled: bool = True
    hour_utc: int = 9  # seed 003: weekly "Run Monday 9:00 AM", monthly "Run 1st of month"
    weekday: int = 0
    recipients: list[str] = field(default_factory=list)
    sender: str = ""
    gmail_api_endpoint: str | None = None
    gmail_token: str | None = None
    gmail_credentials_file: str | None = None
    console_url: str = ""
    max_attempts: int = 5

    def due(self, kind: str, now: datetime) -> bool:
        """Is this the moment (or past it) to generate the last period's report of `kind`? Weekly: from the
        configured weekday and hour on (a missed run catches up later in the week); monthly: from the
        hour on the 1st on (and the rest of the month)."""
        if not self.enabled:
            return False
        if kind == "weekly_kpi":
            return now.weekday() > self.weekday or (
                now.weekday() == self.weekday and now.hour >= self.hour_utc
            )
        return now.day > 1 or now.hour >= self.hour_utc


class ReportView(BaseModel):
    report_id: str
    kind: Kind
    title: str
    period_start: date
    period_end: date
    generated_at: datetime
    generated_by: str
    recipients: list[str]
    email_state: EmailState
    email_attempts: int
    email_error: str | None
    emailed_at: datetime | None


class ReportDetail(ReportView):
    figures: dict[str, Any]


class GenerateReport(BaseModel):
    kind: Kind
    period_start: date
