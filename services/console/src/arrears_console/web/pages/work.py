"""Worklist: my open tasks and my team's queue (escalation's tasks), by priority then SLA; claim, complete
with an outcome, reassign (supervisor). Every action is a call to escalation as the signed-in person."""

from __future__ import annotations

from typing import Any

from arrears_shared.auth import Principal, requires
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from ..templating import page
from ..upstream import UpstreamError
from .common import ContextGetter, back, by_priority_then_sla, upstreams


def router(get_context: ContextGetter) -> APIRouter:
    r = APIRouter(tags=["web"], include_in_schema=False)
    worker = Depends(requires("tasks.work"))

    async def queues(
        request: Request, who: Principal
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
        """My open tasks, my team's, and whether there were more than the page reads (it says so)."""
        up = upstreams(get_context())
        mine, more_mine = await up.walk(
            request, who, "escalation", "/tasks", params={"status": "open", "assignee": who.name}
        )
        team_params: dict[str, Any] = {"status": "open"}
        if who.team:
            team_params["team"] = who.team
        team, more_team = await up.walk(request, who, "escalation", "/tasks", params=team_params)
        team = [t for t in team if t["assignee"] != who.name]
        return by_priority_then_sla(mine), by_priority_then_sla(team), more_mine or more_team

    @r.get("/work", response_class=HTMLResponse)
    async def worklist(
        request: Request, who: Principal = worker, fragment: str | None = None
    ) -> HTMLResponse:
        try:
            mine, team, more = await queues(request, who)
        except UpstreamError as e:
            return page(
                request, who, "work.html", status=502, mine=[], team=[], more=False, unavailable=e.detail
            )
        template = "work_queues.html" if fragment == "queues" else "work.html"
        return page(request, who, template, mine=mine, team=team, more=more, unavailable="")

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
