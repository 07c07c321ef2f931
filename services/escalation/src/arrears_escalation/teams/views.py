"""Teams API: read calendars (tasks.work), change one (teams.write: supervisor, admin; audited). Thin."""

from __future__ import annotations

from collections.abc import Callable

from arrears_shared import paging
from arrears_shared.auth import Principal, requires
from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response

from ..deps import Deps
from .models import TEAM_ID, TeamSettings, TeamView
from .service import get_team, page_teams, put_team

TeamId = Path(pattern=TEAM_ID)


def make_router(deps: Deps) -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(prefix="/teams", tags=["teams"])
        reader = Depends(requires("tasks.work"))
        writer = Depends(requires("teams.write"))

        @router.get("", response_model=list[TeamView], responses=paging.RESPONSES)
        async def teams_list(
            request: Request,
            response: Response,
            limit: int = Query(100, ge=1, le=500),
            cursor: str | None = paging.CURSOR_QUERY,
            _: Principal = reader,
        ) -> list[TeamView]:
            async with get_context().engine.connect() as conn:
                rows, after = await page_teams(conn, limit, cursor)
            paging.announce(request, response, after)
            return rows

        @router.get("/{team}", response_model=TeamView)
        async def team_get(team: str = TeamId, _: Principal = reader) -> TeamView:
            async with get_context().engine.connect() as conn:
                view = await get_team(conn, team)
            if view is None:
                raise HTTPException(404, "team has no calendar (it works around the clock)")
            return view

        @router.put("/{team}", response_model=TeamView)
        async def team_put(body: TeamSettings, team: str = TeamId, who: Principal = writer) -> TeamView:
            """Set the team's calendar, lead and notification emails. Audited; published on `team-calendars`;
            the open, not yet breached tasks of the team are re-timed to the new calendar."""
            async with get_context().transaction() as tx:
                view, _ = await put_team(tx, team, body, who, deps.clock.now())
            return view

        return router

    return factory
