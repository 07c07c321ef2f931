"""`arrears up`'s demo teams: working calendars, leads and notification addresses, set through escalation's
own API (`PUT /teams/{team}`) with the stack's admin key, so they are audited and published on
`team-calendars` like any change a supervisor makes on the console's Teams page."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import httpx

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")


def _us_holidays(year: int) -> list[dict[str, str]]:
    """A few fixed-date US public holidays of `year` and the next (the `holidays` package has them all, by
    country and state, if a team needs more: they are just dates on the team's calendar)."""
    out = []
    for y in (year, year + 1):
        out += [
            {"date": date(y, 1, 1).isoformat(), "name": "New Year's Day"},
            {"date": date(y, 7, 4).isoformat(), "name": "Independence Day"},
            {"date": date(y, 12, 25).isoformat(), "name": "Christmas Day"},
        ]
    return out


def demo_teams(today: date, lead: str, sender_domain: str = "example.com") -> dict[str, dict[str, Any]]:
    """team -> its settings: collectors 9-17 New York with a lunch break, disputes 8-16:30 Chicago, a senior
    desk in Mexico City (Spanish-speaking customers), supervisors with a late shift."""
    ny = {"timezone": "America/New_York", "holidays": _us_holidays(today.year)}
    return {
        "collectors": {
            "calendar": {
                **ny,
                "hours": {
                    d: [{"start": "09:00", "end": "12:30"}, {"start": "13:30", "end": "17:00"}]
                    for d in WEEKDAYS
                },
            },
            "lead": lead,
            "emails": {lead: f"{lead}@{sender_domain}"},
        },
        "disputes": {
            "calendar": {
                "timezone": "America/Chicago",
                "hours": {d: [{"start": "08:00", "end": "16:30"}] for d in WEEKDAYS},
                "holidays": _us_holidays(today.year),
            },
            "lead": lead,
            "emails": {lead: f"{lead}@{sender_domain}"},
        },
        "senior": {
            "calendar": {
                "timezone": "America/Mexico_City",
                "hours": {
                    **{d: [{"start": "09:00", "end": "18:00"}] for d in WEEKDAYS},
                    "sat": [{"start": "09:00", "end": "13:00"}],
                },
                "holidays": [
                    {"date": date(today.year, 9, 16).isoformat(), "name": "Día de la Independencia"},
                    {"date": date(today.year, 12, 25).isoformat(), "name": "Navidad"},
                ],
            },
            "lead": lead,
            "emails": {},
        },
        "supervisors": {
            "calendar": {**ny, "hours": {d: [{"start": "08:00", "end": "20:00"}] for d in WEEKDAYS}},
            "lead": lead,
            "emails": {lead: f"{lead}@{sender_domain}"},
        },
    }


def load_demo_teams(
    escalation_url: str, admin_key: str, today: date, lead: str = "admin", wait_s: float = 90.0
) -> list[str]:
    """Set the demo teams that have no calendar yet (a team someone already edited is left as it is),
    waiting up to `wait_s` for escalation to answer (it may still be starting). Returns the teams set."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    done = []
    deadline = time.monotonic() + wait_s
    with httpx.Client(base_url=escalation_url, headers=headers, timeout=10) as client:
        while True:
            try:
                if client.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"escalation did not answer within {wait_s:.0f}s")
            time.sleep(1)
        for team, body in demo_teams(today, lead).items():
            if client.get(f"/teams/{team}").status_code == 200:
                continue
            client.put(f"/teams/{team}", json=body).raise_for_status()
            done.append(team)
    return done
