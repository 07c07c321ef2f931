"""Who gets a task: the team (possibly redirected by priority), then round-robin among its agents.

The round-robin cursor is a row per team in Postgres (`UPDATE ... RETURNING`), so replicas share it."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..cases.models import SCHEMA


class Agent(BaseModel):
    id: str = Field(min_length=1, max_length=100)
    team: str = Field(min_length=1, max_length=64)
    active: bool = True


def team_for(team: str, priority: str, priority_teams: dict[str, str]) -> str:
    """`priority_teams` (e.g. {"critical": "supervisors"}) sends a priority to a team whatever the rule said."""
    return priority_teams.get(priority, team)


async def next_agent(conn: AsyncConnection, team: str, agents: list[Agent]) -> str | None:
    members = sorted(a.id for a in agents if a.team == team and a.active)
    if not members:
        return None  # the team's queue: anyone in the team may take it
    n = (
        await conn.execute(
            text(
                f"""INSERT INTO {SCHEMA}.assign_cursor (team, n) VALUES (:t, 1)
                ON CONFLICT (team) DO UPDATE SET n = {SCHEMA}.assign_cursor.n + 1 RETURNING n"""
            ),
            {"t": team},
        )
    ).scalar_one()
    return members[(n - 1) % len(members)]
