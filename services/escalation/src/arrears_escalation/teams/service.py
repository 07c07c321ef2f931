"""Teams: read a team's calendar (24/7 when it has none), change a team (audited, published on
`team-calendars`, open SLAs re-timed), and republish every calendar daily so a new subscriber learns them
even after the topic's retention dropped the changes."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from arrears_shared import paging
from arrears_shared.auth import Principal
from arrears_shared.events import TeamCalendarChanged
from arrears_shared.stream.transaction import Transaction
from arrears_shared.working_time import ALWAYS_OPEN, TeamCalendar, add_working_time
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..audit.service import append
from ..tasks.models import tasks
from .models import TeamSettings, TeamView, teams

AT_RISK_SHARE = 0.75  # an SLA is at risk once three quarters of its working time has passed


def _view(r: Any) -> TeamView:
    return TeamView.model_validate(r._asdict())


async def list_teams(conn: AsyncConnection) -> list[TeamView]:
    """Every team, by name."""
    return [_view(r) for r in await conn.execute(select(teams).order_by(teams.c.team))]


async def page_teams(
    conn: AsyncConnection, limit: int, cursor: str | None
) -> tuple[list[TeamView], str | None]:
    """One page of teams by name, and the cursor of the next page (None on the last one)."""
    q = paging.keyset(select(teams), (teams.c.team,), cursor, limit, descending=[False])
    rows, after = paging.page((await conn.execute(q)).all(), limit, lambda r: (r.team,))
    return [_view(r) for r in rows], after


async def get_team(conn: AsyncConnection, team: str) -> TeamView | None:
    r = (await conn.execute(select(teams).where(teams.c.team == team))).first()
    return _view(r) if r else None


async def calendar_of(conn: AsyncConnection, team: str) -> TeamCalendar:
    """The team's working calendar; a team without one works around the clock (wall-clock SLAs)."""
    cal = (await conn.execute(select(teams.c.calendar).where(teams.c.team == team))).scalar_one_or_none()
    return TeamCalendar.model_validate(cal) if cal is not None else ALWAYS_OPEN


async def lead_and_emails(conn: AsyncConnection, team: str) -> tuple[str | None, dict[str, str]]:
    """The team's lead and the notification address of every person any team lists (a task's assignee may
    be listed by their own team, not the task's)."""
    lead = (await conn.execute(select(teams.c.lead).where(teams.c.team == team))).scalar_one_or_none()
    emails: dict[str, str] = {}
    for r in await conn.execute(select(teams.c.team, teams.c.emails).order_by(teams.c.team)):
        for who, address in (r.emails or {}).items():
            emails.setdefault(who, address)
    own = (await conn.execute(select(teams.c.emails).where(teams.c.team == team))).scalar_one_or_none()
    emails.update(own or {})  # the task's own team says last
    return lead, emails


def sla_times(created_at: datetime, sla: timedelta, cal: TeamCalendar) -> tuple[datetime, datetime]:
    """(at risk at, due at): three quarters of the SLA and all of it, in the team's working time."""
    return add_working_time(created_at, sla * AT_RISK_SHARE, cal), add_working_time(created_at, sla, cal)


def calendar_event(view: TeamView) -> TeamCalendarChanged:
    cal = view.calendar.model_dump(mode="json")
    return TeamCalendarChanged(
        account_id=f"team:{view.team}",
        team=view.team,
        version=view.version,
        timezone=cal["timezone"],
        hours=cal["hours"],
        holidays=[{"date": h["date"], "name": h["name"]} for h in cal["holidays"]],
        changed_at=view.updated_at,
    )


def publish(tx: Transaction, view: TeamView) -> None:
    # the same id for the same version: a republished calendar a subscriber already has is a no-op there
    tx.emit(calendar_event(view), id=f"team-calendar:{view.team}:{view.version}", time=view.updated_at)


async def retime_open_tasks(conn: AsyncConnection, team: str, cal: TeamCalendar) -> int:
    """Open tasks of `team` not yet breached follow the new calendar: their SLA (working seconds) is counted
    again from their creation. Returns how many were re-timed."""
    rows = (
        await conn.execute(
            select(tasks.c.task_id, tasks.c.created_at, tasks.c.sla_working_s)
            .where(
                tasks.c.team == team,
                tasks.c.status == "open",
                tasks.c.sla_state.in_(("ok", "at_risk")),
                tasks.c.sla_working_s.is_not(None),
            )
            .with_for_update()
        )
    ).all()
    for r in rows:
        at_risk, due = sla_times(r.created_at, timedelta(seconds=r.sla_working_s), cal)
        await conn.execute(
            update(tasks)
            .where(tasks.c.task_id == r.task_id)
            .values(sla_at_risk_at=at_risk, sla_due_at=due, sla_state="ok")
        )
    return len(rows)


async def put_team(
    tx: Transaction, team: str, body: TeamSettings, who: Principal, now: datetime
) -> tuple[TeamView, int]:
    """Create or change a team, in the caller's transaction: the audit entry (before / after), the
    `team-calendars` event and the re-timed open SLAs commit together. Returns the team and how many open
    tasks were re-timed."""
    conn = tx.conn
    before = await get_team(conn, team)
    values = {
        "calendar": body.calendar.model_dump(mode="json"),
        "lead": body.lead,
        "emails": dict(body.emails),
        "updated_at": now,
        "updated_by": who.name,
    }
    r = (
        await conn.execute(
            insert(teams)
            .values(team=team, version=1, **values)
            .on_conflict_do_update(
                index_elements=[teams.c.team], set_={**values, "version": teams.c.version + 1}
            )
            .returning(*teams.c)
        )
    ).one()
    after = _view(r)
    await append(
        conn,
        actor=who.name,
        role=who.role,
        action="team.update" if before else "team.create",
        entity="team",
        entity_id=team,
        before=before.model_dump(mode="json", include={"calendar", "lead", "emails"}) if before else None,
        after=after.model_dump(mode="json", include={"calendar", "lead", "emails", "version"}),
        at=now,
    )
    publish(tx, after)
    retimed = 0
    if before is None or before.calendar != after.calendar:
        retimed = await retime_open_tasks(conn, team, after.calendar)
    return after, retimed


async def republish_if_due(tx: Transaction, now: datetime, every: timedelta) -> int:
    """Publish every team's current calendar again when the last time is `every` ago: the topic keeps
    events for days, a subscriber that starts later still learns every calendar. The row lock makes one
    replica do it; the others skip. Returns how many calendars were published."""
    conn = tx.conn
    await conn.execute(
        text(
            f"""INSERT INTO {tx.schema}.calendars_published (one, at) VALUES (true, 'epoch')
            ON CONFLICT DO NOTHING"""
        )
    )
    last = (
        await conn.execute(text(f"SELECT at FROM {tx.schema}.calendars_published FOR UPDATE SKIP LOCKED"))
    ).first()
    if last is None or now - last.at < every:
        return 0
    views = await list_teams(conn)
    for v in views:
        publish(tx, v)
    await conn.execute(text(f"UPDATE {tx.schema}.calendars_published SET at = :at"), {"at": now})
    return len(views)
