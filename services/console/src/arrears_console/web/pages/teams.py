"""Teams: each team's working calendar (time zone, weekly hours, holidays), its lead and the members'
notification email addresses; supervisors and admins edit them. SLAs count the team's working time only
(escalation, docs/responses-and-escalation.md "Business hours and SLAs"). Every change is a call to
escalation as the signed-in person (audited there)."""

from __future__ import annotations

import re
from typing import Any

from arrears_shared.auth import Principal, requires
from arrears_shared.working_time import WEEKDAYS
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from ..templating import page
from ..upstream import UpstreamError
from .common import ContextGetter, back, upstreams

TEAM_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SPAN = re.compile(r"^\s*(\d{1,2}:\d{2})\s*-\s*(\d{1,2}:\d{2})\s*$")
DAY_NAMES = {
    "mon": "Monday",
    "tue": "Tuesday",
    "wed": "Wednesday",
    "thu": "Thursday",
    "fri": "Friday",
    "sat": "Saturday",
    "sun": "Sunday",
}


class FormError(ValueError):
    pass


def hours_text(intervals: list[dict[str, str]]) -> str:
    return ", ".join(f"{i['start'][:5]}-{i['end'][:5]}" for i in intervals)


def parse_hours(day: str, value: str) -> list[dict[str, str]]:
    """ "09:00-12:00, 13:00-17:00" -> intervals; empty = closed that day."""
    out = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        m = SPAN.match(part)
        if not m:
            raise FormError(f"{DAY_NAMES[day]}: {part!r} is not like 09:00-17:00")
        out.append({"start": m.group(1).zfill(5), "end": m.group(2).zfill(5)})
    return out


def parse_lines(value: str, what: str) -> list[tuple[str, str]]:
    """One "<first word> <rest>" per line (holidays: date and name; emails: person and address)."""
    out = []
    for line in filter(None, (ln.strip() for ln in value.splitlines())):
        head, _, rest = line.partition(" ")
        if what == "emails" and not rest.strip():
            raise FormError(f"notification emails: {line!r} needs a person and an address")
        out.append((head, rest.strip()))
    return out


def settings_from_form(form: dict[str, Any]) -> dict[str, Any]:
    hours = {d: parse_hours(d, str(form.get(f"hours_{d}", ""))) for d in WEEKDAYS}
    return {
        "calendar": {
            "timezone": str(form.get("timezone", "")).strip(),
            "hours": {d: spans for d, spans in hours.items() if spans},
            "holidays": [
                {"date": d, "name": n} for d, n in parse_lines(str(form.get("holidays", "")), "holidays")
            ],
        },
        "lead": str(form.get("lead", "")).strip() or None,
        "emails": dict(parse_lines(str(form.get("emails", "")), "emails")),
    }


def for_page(team: dict[str, Any]) -> dict[str, Any]:
    cal = team["calendar"]
    return {
        **team,
        "hours_by_day": {d: hours_text(cal["hours"].get(d, [])) for d in WEEKDAYS},
        "holidays_text": "\n".join(
            f"{h['date']} {h.get('name', '')}".strip() for h in cal.get("holidays", [])
        ),
        "emails_text": "\n".join(f"{k} {v}" for k, v in sorted(team.get("emails", {}).items())),
    }


def router(get_context: ContextGetter) -> APIRouter:
    r = APIRouter(tags=["web"], include_in_schema=False)
    reader = Depends(requires("tasks.work"))
    writer = Depends(requires("teams.write"))

    @r.get("/teams", response_class=HTMLResponse)
    async def teams(request: Request, who: Principal = reader) -> HTMLResponse:
        try:
            found, _ = await upstreams(get_context()).walk(request, who, "escalation", "/teams", at_most=500)
        except UpstreamError as e:
            return page(request, who, "teams.html", status=502, teams=[], unavailable=e.detail, **_names())
        return page(
            request, who, "teams.html", teams=[for_page(t) for t in found], unavailable="", **_names()
        )

    @r.post("/teams")
    async def save(
        request: Request, team: str = Form(..., max_length=64), who: Principal = writer
    ) -> Response:
        team = team.strip()
        if not TEAM_ID.match(team):
            return back("/teams", error="a team name is letters, digits, '.', '_' or '-' (at most 64)")
        form = dict(await request.form())
        try:
            body = settings_from_form(form)
        except FormError as e:
            return back("/teams", error=str(e))
        try:
            await upstreams(get_context()).call(
                request, who, "escalation", "PUT", f"/teams/{team}", json=body
            )
        except UpstreamError as e:
            return back("/teams", error=f"saving {team} failed: {e.detail}")
        return back("/teams", flash=f"{team} saved: its open SLAs now count the new working hours")

    return r


def _names() -> dict[str, Any]:
    return {"weekdays": WEEKDAYS, "day_names": DAY_NAMES}
