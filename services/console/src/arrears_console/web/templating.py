"""Jinja2 pages (autoescaped) with the signed-in person's permissions, and small display filters."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from arrears_shared import channels
from arrears_shared.auth import Principal
from arrears_shared.money import format_minor
from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"

NAV = [  # (label, path, permission)
    ("Dashboard", "/", "reports.read"),
    ("Worklist", "/work", "tasks.work"),
    ("Accounts", "/accounts", "reports.read"),
    ("Approvals", "/approvals", "approvals.decide"),
    ("Teams", "/teams", "tasks.work"),
    ("Aging", "/aging", "reports.read"),
    ("KPIs", "/kpis", "reports.read"),
    ("Reports", "/reports", "reports.read"),
    ("Campaigns", "/campaigns", "reports.read"),
    ("Policies", "/policies", "reports.read"),
    ("Dead letters", "/ops/dlq", "dlq.read"),
    ("Ingest", "/ops/ingest", "ingest.read"),
    ("Providers", "/ops/providers", "providers.read"),
    ("Incident", "/ops/incident", "providers.read"),
]


def _money(minor: int | None, currency: str | None) -> str:
    return "—" if minor is None or currency is None else format_minor(minor, currency)


def _when(value: datetime | str | None, tz: str | None = None) -> str:
    if value is None or value == "":
        return ""
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    if tz:
        try:
            dt = dt.astimezone(ZoneInfo(tz))
        except (KeyError, ValueError):
            pass
    return dt.strftime("%Y-%m-%d %H:%M %Z").strip()


def _left(value: datetime | str | None) -> str:
    """Time left until `value` ("2 h 05 min", or "overdue 3 h")."""
    if not value:
        return ""
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    seconds = int((dt - datetime.now(UTC)).total_seconds())
    sign, seconds = ("overdue " if seconds < 0 else ""), abs(seconds)
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m = rem // 60
    text = f"{d} d {h} h" if d else (f"{h} h {m:02d} min" if h else f"{m} min")
    return sign + text


env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters["money"] = _money
env.filters["when"] = _when
env.filters["left"] = _left
env.globals["today"] = date.today
# every installed channel (name, label), in registry order: choices on the account page's actions
env.globals["registered_channels"] = lambda: [(c.name, c.label) for c in channels.registered().values()]


def page(request: Request, who: Principal, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    nav = [(label, path) for label, path, perm in NAV if who.can(perm)]
    html = env.get_template(template).render(
        request=request,
        who=who,
        can=who.can,
        nav=nav,
        path=request.url.path,
        csrf=who.csrf_token or "",
        flash=request.query_params.get("flash", ""),
        error=request.query_params.get("error", ""),
        **context,
    )
    return HTMLResponse(html, status_code=status)
