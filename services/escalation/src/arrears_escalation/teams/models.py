"""Teams: a working calendar, a lead and the members' notification email addresses (API bodies and table)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from arrears_shared.working_time import TeamCalendar
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import BigInteger, Column, DateTime, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from ..cases.models import SCHEMA

metadata = MetaData(schema=SCHEMA)

teams = Table(
    "teams",
    metadata,
    Column("team", Text, primary_key=True),
    Column("calendar", JSONB, nullable=False),
    Column("lead", Text),
    Column("emails", JSONB, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", Text, nullable=False),
)

TEAM_ID = r"^[A-Za-z0-9_.-]{1,64}$"
# a plain, header-safe address (no display name, no spaces or line breaks: it goes into a To: header)
Address = Annotated[
    str, Field(pattern=r"^[^@\s<>,;]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$", max_length=320)
]


class TeamSettings(BaseModel):
    """What a supervisor sets for a team (`PUT /teams/{team}`)."""

    model_config = ConfigDict(extra="forbid")

    calendar: TeamCalendar
    lead: str | None = Field(
        None, min_length=1, max_length=100, description="Principal name of the team lead"
    )
    emails: dict[str, Address] = Field(
        default_factory=dict,
        max_length=500,
        description="Principal name -> address where that person gets notification emails (members and lead)",
    )


class TeamView(TeamSettings):
    team: str
    version: int
    updated_at: datetime
    updated_by: str
