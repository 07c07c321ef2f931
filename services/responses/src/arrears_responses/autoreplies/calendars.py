"""The teams' working calendars, replicated from `team-calendars` (escalation publishes every change and,
daily, every calendar again). State transfer: the highest version per team wins; an older or repeated
version changes nothing, so order and redelivery do not matter."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from arrears_shared.cloudevents import Envelope
from arrears_shared.events import TeamCalendarChanged
from arrears_shared.stream.transaction import Transaction
from arrears_shared.working_time import TeamCalendar
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger(__name__)


def calendar_from(ev: TeamCalendarChanged) -> TeamCalendar:
    return TeamCalendar.model_validate({"timezone": ev.timezone, "hours": ev.hours, "holidays": ev.holidays})


async def apply_calendar(tx: Transaction, ev: TeamCalendarChanged) -> bool:
    """Keep `ev` if it is newer than what is stored. Returns whether it was stored."""
    try:
        cal = calendar_from(ev)
    except ValidationError as e:  # a calendar this version cannot read: keep the last good one, say so
        log.error(
            "team calendar not understood; the previous one stays", extra={"team": ev.team, "error": str(e)}
        )
        return False
    row = await tx.conn.execute(
        text(
            f"""INSERT INTO {tx.schema}.team_calendars (team, version, calendar, changed_at)
            VALUES (:t, :v, CAST(:c AS jsonb), :at)
            ON CONFLICT (team) DO UPDATE SET version = excluded.version, calendar = excluded.calendar,
                changed_at = excluded.changed_at, received_at = now()
            WHERE {tx.schema}.team_calendars.version < excluded.version
            RETURNING 1"""
        ),
        {"t": ev.team, "v": ev.version, "c": cal.model_dump_json(), "at": ev.changed_at},
    )
    return row.first() is not None


def team_calendar_handler() -> Callable[[Sequence[Envelope], Transaction], Awaitable[None]]:
    """The `team-calendars` consumer."""

    async def handle_team_calendars(events: Sequence[Envelope], tx: Transaction) -> None:
        for env in events:
            if isinstance(env.data, TeamCalendarChanged):
                await apply_calendar(tx, env.data)

    return handle_team_calendars


async def calendar_of(conn: AsyncConnection, schema: str, team: str) -> TeamCalendar | None:
    """The team's calendar as last published; None when it has none (it works around the clock)."""
    cal = (
        await conn.execute(text(f"SELECT calendar FROM {schema}.team_calendars WHERE team = :t"), {"t": team})
    ).scalar_one_or_none()
    return TeamCalendar.model_validate(cal) if cal is not None else None
