"""Tasks: create (idempotently, assigned), list, assign, complete; SLA breach and supervisor escalation."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from arrears_shared import paging
from arrears_shared.auth import Principal
from arrears_shared.vault.cipher import is_sealed, open_value, seal_value
from arrears_shared.vault.keys import vault
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import metrics
from ..audit.service import append
from ..deps import Deps
from .assignment import next_agent, team_for
from .models import TaskView, tasks

log = logging.getLogger(__name__)
TASK_NAMESPACE = uuid.UUID("0b8f3f3e-1f7a-4d5e-8c2b-7a1d9e6f5c33")
PRIORITY_UP = {"low": "normal", "normal": "high", "high": "critical", "critical": "critical"}


def task_id_for(account_id: str, kind: str, trigger_id: str) -> str:
    return str(uuid.uuid5(TASK_NAMESPACE, f"{account_id}:{kind}:{trigger_id}"))


async def create_task(
    conn: AsyncConnection,
    deps: Deps,
    *,
    account_id: str,
    case_id: str | None,
    kind: str,
    team: str,
    priority: str,
    due_in: timedelta,
    sla: timedelta,
    rule_id: str | None,
    trigger_id: str,
    detail: str,
    now: datetime,
) -> str | None:
    """The task for (account, kind, trigger) — once. Returns its id if it was created now."""
    tid = task_id_for(account_id, kind, trigger_id)
    team = team_for(team, priority, deps.priority_teams)
    assignee = await next_agent(conn, team, deps.agents)
    row = (
        await conn.execute(
            insert(tasks)
            .values(
                task_id=tid,
                case_id=case_id,
                account_id=account_id,
                kind=kind,
                rule_id=rule_id,
                priority=priority,
                team=team,
                assignee=assignee,
                status="open",
                due_at=now + due_in,
                sla_due_at=now + sla,
                sla_state="ok",
                detail=detail,
                created_at=now,
            )
            .on_conflict_do_nothing()
            .returning(tasks.c.task_id)
        )
    ).first()
    if row is not None:
        metrics.TASKS.labels(kind, priority).inc()
    return tid if row is not None else None


def view(r: Any, outcome: str | None) -> TaskView:
    return TaskView.model_validate({**r._asdict(), "outcome": outcome})


async def _views(conn: AsyncConnection, rows: Sequence[Any]) -> list[TaskView]:
    """The rows as views, each outcome (sealed with the account's data key) opened: one key query for the
    rows, none when no outcome is sealed; `[erased]` once the account is erased."""
    sealed = {r.account_id for r in rows if is_sealed(r.outcome)}
    keys = await vault().for_reading(conn, sealed) if sealed else {}
    return [view(r, open_value(keys.get(r.account_id), r.account_id, r.outcome)) for r in rows]


async def list_tasks(conn: AsyncConnection, **where: str | None) -> list[TaskView]:
    """Every matching task, newest first (all pages)."""
    out: list[TaskView] = []
    cursor: str | None = None
    while True:
        rows, cursor = await page_tasks(conn, limit=500, cursor=cursor, **where)
        out += rows
        if cursor is None:
            return out


async def page_tasks(
    conn: AsyncConnection,
    *,
    status: str | None = None,
    account_id: str | None = None,
    assignee: str | None = None,
    team: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[TaskView], str | None]:
    """One page, newest first, and the cursor of the next page (None on the last one)."""
    q = paging.keyset(select(tasks), (tasks.c.created_at, tasks.c.task_id), cursor, limit)
    for col, val in (
        (tasks.c.status, status),
        (tasks.c.account_id, account_id),
        (tasks.c.assignee, assignee),
        (tasks.c.team, team),
    ):
        if val is not None:
            q = q.where(col == val)
    rows, after = paging.page((await conn.execute(q)).all(), limit, lambda r: (r.created_at, r.task_id))
    return await _views(conn, rows), after


async def get_task(conn: AsyncConnection, task_id: str) -> TaskView | None:
    r = (await conn.execute(select(tasks).where(tasks.c.task_id == task_id))).first()
    return (await _views(conn, [r]))[0] if r else None


async def seal_for(conn: AsyncConnection, account_id: str, value: str) -> str:
    """`value` (a person's free text about the account) sealed with the account's data key, for storage in
    the caller's transaction; empty stays empty (no key is made for it)."""
    if not value:
        return value
    key = (await vault().for_writing(conn, [account_id]))[account_id]
    return seal_value(key, account_id, value) or value


async def assign_task(conn: AsyncConnection, task_id: str, assignee: str) -> TaskView | None:
    r = (
        await conn.execute(
            update(tasks)
            .where(tasks.c.task_id == task_id, tasks.c.status == "open")
            .values(assignee=assignee)
            .returning(*tasks.c)
        )
    ).first()
    return (await _views(conn, [r]))[0] if r else None


async def complete_task(
    conn: AsyncConnection, task_id: str, outcome: str, now: datetime, *, who: Principal | None = None
) -> TaskView | None:
    """Complete an open task (None when it is not open or does not exist); its outcome is stored sealed with
    the account's data key. With `who`, the completion is audited (the outcome sealed as stored)."""
    account_id = (
        await conn.execute(
            select(tasks.c.account_id).where(tasks.c.task_id == task_id, tasks.c.status == "open")
        )
    ).scalar_one_or_none()
    if account_id is None:
        return None
    sealed = await seal_for(conn, account_id, outcome)
    r = (
        await conn.execute(
            update(tasks)
            .where(tasks.c.task_id == task_id, tasks.c.status == "open")
            .values(status="done", outcome=sealed, completed_at=now)
            .returning(*tasks.c)
        )
    ).first()
    if r is None:  # completed meanwhile
        return None
    if who is not None:
        await append(
            conn,
            actor=who.name,
            role=who.role,
            action="task.complete",
            entity="task",
            entity_id=task_id,
            before={"status": "open"},
            after={"status": r.status, "outcome": sealed, "account_id": account_id},
            at=now,
        )
    return view(r, outcome)


async def check_sla(conn: AsyncConnection, deps: Deps, now: datetime) -> tuple[int, int]:
    """Open tasks past their SLA become `breached` (alert); still open `supervisor_after` later they become
    `escalated`: one priority up and reassigned to the supervisors' team. Returns (breached, escalated)."""
    breached = (
        await conn.execute(
            select(tasks)
            .where(tasks.c.status == "open", tasks.c.sla_state == "ok", tasks.c.sla_due_at <= now)
            .limit(deps.timer_batch)
            .with_for_update(skip_locked=True)
        )
    ).all()
    for t in breached:
        await conn.execute(update(tasks).where(tasks.c.task_id == t.task_id).values(sla_state="breached"))
        metrics.SLA_BREACHES.labels(t.kind, t.priority).inc()
        log.warning(
            "task SLA breached",
            extra={"task_id": t.task_id, "kind": t.kind, "team": t.team, "assignee": t.assignee},
        )
    late = (
        await conn.execute(
            select(tasks)
            .where(
                tasks.c.status == "open",
                tasks.c.sla_state == "breached",
                tasks.c.sla_due_at <= now - deps.supervisor_after,
            )
            .limit(deps.timer_batch)
            .with_for_update(skip_locked=True)
        )
    ).all()
    for t in late:
        supervisor = await next_agent(conn, deps.supervisor_team, deps.agents)
        await conn.execute(
            update(tasks)
            .where(tasks.c.task_id == t.task_id)
            .values(
                sla_state="escalated",
                priority=PRIORITY_UP[t.priority],
                team=deps.supervisor_team,
                assignee=supervisor,
            )
        )
        metrics.SLA_ESCALATIONS.labels(t.kind).inc()
        log.warning(
            "task escalated to a supervisor",
            extra={"task_id": t.task_id, "kind": t.kind, "supervisor": supervisor},
        )
    return len(breached), len(late)
