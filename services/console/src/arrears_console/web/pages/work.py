"""Worklist: my open tasks and my team's queue (escalation's tasks), by priority then SLA; claim, complete
with an outcome, reassign (supervisor). Every action is a call to escalation as the signed-in person."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any, Literal

from arrears_shared.auth import Principal, requires
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from ..templating import page
from ..upstream import UpstreamError
from .common import ContextGetter, back, by_priority_then_sla, upstreams


def router(get_context: ContextGetter) -> APIRouter:
    r = APIRouter(tags=["web"], include_in_schema=False)
    worker = Depends(requires("tasks.work"))

    async def queues(
        request: Request, who: Principal, sort: str = "priority", follow_up: str = ""
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
        """My open tasks, my team's, and whether there were more than the page reads (it says so). `sort`:
        priority then SLA (default), the earliest follow-up first, or the largest expected recovery of the
        account's model score first (escalation orders those: its `sort=expected_recovery`); `follow_up`:
        only those due / set."""
        up = upstreams(get_context())
        extra: dict[str, Any] = {"follow_up": follow_up} if follow_up in ("due", "set") else {}
        if sort == "expected_recovery":
            extra["sort"] = "expected_recovery"
        mine, more_mine = await up.walk(
            request, who, "escalation", "/tasks", params={"status": "open", "assignee": who.name, **extra}
        )
        team_params: dict[str, Any] = {"status": "open", **extra}
        if who.team:
            team_params["team"] = who.team
        team, more_team = await up.walk(request, who, "escalation", "/tasks", params=team_params)
        team = [t for t in team if t["assignee"] != who.name]
        if sort == "expected_recovery":
            return mine, team, more_mine or more_team  # in escalation's order
        order = by_follow_up if sort == "follow_up" else by_priority_then_sla
        return order(mine), order(team), more_mine or more_team

    @r.get("/work", response_class=HTMLResponse)
    async def worklist(
        request: Request,
        who: Principal = worker,
        fragment: str | None = None,
        sort: Literal["priority", "follow_up", "expected_recovery"] = Query("priority"),
        follow_up: Literal["", "due", "set"] = Query(""),
    ) -> HTMLResponse:
        view = {"sort": sort, "follow_up": follow_up}
        try:
            mine, team, more = await queues(request, who, sort, follow_up)
        except UpstreamError as e:
            return page(
                request,
                who,
                "work.html",
                status=502,
                mine=[],
                team=[],
                more=False,
                unavailable=e.detail,
                view=view,
            )
        template = "work_queues.html" if fragment == "queues" else "work.html"
        return page(request, who, template, mine=mine, team=team, more=more, unavailable="", view=view)

    async def act(request: Request, who: Principal, path: str, body: dict[str, Any], done: str) -> Response:
        try:
            await upstreams(get_context()).call(request, who, "escalation", "POST", path, json=body)
        except UpstreamError as e:
            return back("/work", error=f"{done} failed: {e.detail}")
        return back("/work", flash=done)

    @r.post("/work/{task_id}/claim")
    async def claim(request: Request, task_id: str, who: Principal = worker) -> Response:
        return await act(
            request, who, f"/tasks/{task_id}/assign", {"assignee": who.name}, f"Task {task_id} is yours"
        )

    @r.post("/work/{task_id}/complete")
    async def complete(
        request: Request,
        task_id: str,
        outcome: str = Form(..., min_length=1, max_length=500),
        who: Principal = worker,
    ) -> Response:
        return await act(
            request, who, f"/tasks/{task_id}/complete", {"outcome": outcome}, f"Task {task_id} done"
        )

    @r.post("/work/{task_id}/follow-up")
    async def follow_up(
        request: Request,
        task_id: str,
        when: str = Form("", max_length=40),
        who: Principal = worker,
    ) -> Response:
        """Set the follow-up date (a day: 09:00 UTC that day; or a date and time, UTC), or clear it (empty)."""
        try:
            at = _follow_up_at(when)
        except ValueError:
            return back("/work", error=f"not a date: {when}")
        try:
            await upstreams(get_context()).call(
                request,
                who,
                "escalation",
                "PUT",
                f"/tasks/{task_id}/follow-up",
                json={"follow_up_at": at.isoformat() if at else None},
            )
        except UpstreamError as e:
            return back("/work", error=f"follow-up not set: {e.detail}")
        return back(
            "/work", flash=f"Task {task_id}: follow up {at:%Y-%m-%d %H:%M} UTC" if at else "follow-up cleared"
        )

    @r.post("/work/{task_id}/reassign")
    async def reassign(
        request: Request,
        task_id: str,
        assignee: str = Form(..., min_length=1, max_length=100),
        reason: str = Form("", max_length=2000),
        who: Principal = Depends(requires("tasks.assign")),
    ) -> Response:
        body = {"assignee": assignee, "reason": reason}
        return await act(
            request, who, f"/tasks/{task_id}/assign", body, f"Task {task_id} given to {assignee}"
        )

    return r


def _follow_up_at(value: str) -> datetime | None:
    value = value.strip()
    if not value:
        return None
    d = datetime.fromisoformat(value)
    if len(value) <= 10:
        d = datetime.combine(d.date(), time(9, 0), UTC)
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def by_follow_up(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The earliest follow-up first; tasks without one after, by priority then SLA."""
    dated = sorted(
        (t for t in tasks if t.get("follow_up_at")), key=lambda t: (t["follow_up_at"], t["task_id"])
    )
    return dated + by_priority_then_sla([t for t in tasks if not t.get("follow_up_at")])
