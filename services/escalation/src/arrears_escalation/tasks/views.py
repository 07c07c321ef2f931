"""Tasks API: list/get (accounts.read), claim / complete own tasks (tasks.work), assign to anyone (tasks.assign)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from arrears_shared import paging
from arrears_shared.auth import Principal, requires
from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from ..audit.service import append
from ..deps import Deps
from .models import AssignTask, CompleteTask, FollowUp, TaskView
from .service import assign_task, complete_task, get_task, page_tasks, seal_for, set_follow_up


def make_router(deps: Deps) -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(prefix="/tasks", tags=["tasks"])
        viewer = Depends(requires("accounts.read"))
        agent = Depends(requires("tasks.work"))

        @router.get("", response_model=list[TaskView], responses=paging.RESPONSES)
        async def tasks_list(
            request: Request,
            response: Response,
            status: Literal["open", "done", "cancelled"] | None = None,
            account_id: str | None = None,
            assignee: str | None = None,
            team: str | None = None,
            campaign_id: str | None = None,
            follow_up: Literal["due", "set", "none"] | None = Query(
                None, description="due: follow-up date reached; set: has one; none: has none"
            ),
            sort: Literal["created", "follow_up", "expected_recovery"] = Query(
                "created",
                description="created: newest first; follow_up: earliest follow-up first (only tasks with one); "
                "expected_recovery: largest expected recovery of the account's model score first (reporting "
                "currency; unscored accounts last)",
            ),
            limit: int = Query(100, ge=1, le=500),
            cursor: str | None = paging.CURSOR_QUERY,
            _: Principal = viewer,
        ) -> list[TaskView]:
            async with get_context().engine.connect() as conn:
                rows, after = await page_tasks(
                    conn,
                    status=status,
                    account_id=account_id,
                    assignee=assignee,
                    team=team,
                    campaign_id=campaign_id,
                    follow_up=follow_up,
                    sort=sort,
                    now=deps.clock.now(),
                    limit=limit,
                    cursor=cursor,
                )
            paging.announce(request, response, after)
            return rows

        @router.get("/{task_id}", response_model=TaskView)
        async def task_get(task_id: str, _: Principal = viewer) -> TaskView:
            async with get_context().engine.connect() as conn:
                task = await get_task(conn, task_id)
            if task is None:
                raise HTTPException(404, "task not found")
            return task

        @router.post("/{task_id}/assign", response_model=TaskView)
        async def task_assign(task_id: str, body: AssignTask, who: Principal = agent) -> TaskView:
            if body.assignee != who.name and not who.can("tasks.assign"):
                raise HTTPException(403, "without tasks.assign you may only assign tasks to yourself")
            async with get_context().transaction() as tx:
                before = await get_task(tx.conn, task_id)
                if before is None:
                    raise HTTPException(404, "task not found")
                after = await assign_task(tx.conn, task_id, body.assignee)
                if after is None:
                    raise HTTPException(409, "task is not open")
                await append(
                    tx.conn,
                    actor=who.name,
                    role=who.role,
                    action="task.assign",
                    entity="task",
                    entity_id=task_id,
                    before={"assignee": before.assignee},
                    after={"assignee": after.assignee, "account_id": after.account_id},
                    # a person's words about the account: sealed with its data key, as stored and hashed
                    reason=await seal_for(tx.conn, after.account_id, body.reason),
                    at=deps.clock.now(),
                )
            return after

        @router.put("/{task_id}/follow-up", response_model=TaskView)
        async def task_follow_up(task_id: str, body: FollowUp, who: Principal = agent) -> TaskView:
            """Set or clear (null) when to follow up an open task; own tasks, or anyone's with tasks.assign.
            Audited (`task.follow_up`) in the same transaction."""
            async with get_context().transaction() as tx:
                before = await get_task(tx.conn, task_id)
                if before is None:
                    raise HTTPException(404, "task not found")
                if before.assignee not in (None, who.name) and not who.can("tasks.assign"):
                    raise HTTPException(403, "this task is assigned to someone else")
                after = await set_follow_up(
                    tx.conn, task_id, body.follow_up_at, deps.clock.now(), who, body.reason
                )
                if after is None:
                    raise HTTPException(409, "task is not open")
            return after

        @router.post("/{task_id}/complete", response_model=TaskView)
        async def task_complete(task_id: str, body: CompleteTask, who: Principal = agent) -> TaskView:
            async with get_context().transaction() as tx:
                before = await get_task(tx.conn, task_id)
                if before is None:
                    raise HTTPException(404, "task not found")
                if before.assignee not in (None, who.name) and not who.can("tasks.assign"):
                    raise HTTPException(403, "this task is assigned to someone else")
                # audited in complete_task, the outcome sealed with the account's data key
                after = await complete_task(tx.conn, task_id, body.outcome, deps.clock.now(), who=who)
                if after is None:
                    raise HTTPException(409, "task is not open")
            return after

        return router

    return factory
