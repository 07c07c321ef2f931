"""Tasks: create (idempotently, assigned), list, assign, complete; SLA breach and supervisor escalation."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from arrears_shared import paging
from arrears_shared.auth import Principal
from arrears_shared.vault.cipher import is_sealed, open_value, seal_value
from arrears_shared.vault.keys import vault
from arrears_shared.working_time import add_working_time
from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import metrics
from ..audit.service import append
from ..cases.models import SCHEMA
from ..deps import Deps
from ..notifications.service import notify_breach
from ..scoring.models import account_scores
from ..teams.service import calendar_of, sla_times
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
    promise_id: str | None = None,
) -> str | None:
    """The task for (account, kind, trigger) — once. Returns its id if it was created now. It carries what
    created it: the campaign of the account's latest automatic message and the promise it is about
    (`promise_id`, e.g. the broken promise of a follow-up; else the account's pending promise, if any)."""
    tid = task_id_for(account_id, kind, trigger_id)
    team = team_for(team, priority, deps.priority_teams)
    assignee = await next_agent(conn, team, deps.agents)
    calendar = await calendar_of(conn, team)  # SLA and due date count the team's working time only
    sla_at_risk, sla_due = sla_times(now, sla, calendar)
    origin = await origin_of(conn, account_id, now, promise_id)
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
                due_at=add_working_time(now, due_in, calendar),
                sla_due_at=sla_due,
                sla_at_risk_at=sla_at_risk,
                sla_working_s=sla.total_seconds(),
                sla_state="ok",
                detail=detail,
                created_at=now,
                **origin,
            )
            .on_conflict_do_nothing()
            .returning(tasks.c.task_id)
        )
    ).first()
    if row is not None:
        metrics.TASKS.labels(kind, priority).inc()
    return tid if row is not None else None


async def origin_of(
    conn: AsyncConnection, account_id: str, now: datetime, promise_id: str | None
) -> dict[str, Any]:
    """The campaign and promise columns of a new task: one probe of activity_account (the campaign of the
    latest automatic message at or before `now`, the same attribution as the collection metrics) and one of
    promises (the named promise, else the account's pending one)."""
    campaign = (
        await conn.execute(
            text(
                f"""SELECT data->>'campaign_id' FROM {SCHEMA}.activity
                WHERE account_id = :a AND kind = 'message_out.sent' AND at <= :now
                ORDER BY at DESC LIMIT 1"""
            ),
            {"a": account_id, "now": now},
        )
    ).scalar_one_or_none()
    where = "promise_id = :p" if promise_id else "account_id = :a AND status = 'pending'"
    promise = (
        await conn.execute(
            text(
                f"""SELECT promise_id, amount_minor, currency, due_date FROM {SCHEMA}.promises
                WHERE {where} ORDER BY made_at DESC LIMIT 1"""
            ),
            {"a": account_id, "p": promise_id},
        )
    ).first()
    return {
        "campaign_id": campaign or None,
        "promise_id": promise.promise_id if promise else None,
        "promise_amount_minor": promise.amount_minor if promise else None,
        "promise_currency": promise.currency if promise else None,
        "promise_date": promise.due_date if promise else None,
    }


def view(r: Any, outcome: str | None) -> TaskView:
    return TaskView.model_validate({**r._asdict(), "outcome": outcome})


async def _views(conn: AsyncConnection, rows: Sequence[Any]) -> list[TaskView]:
    """The rows as views, each outcome (sealed with the account's data key) opened: one key query for the
    rows, none when no outcome is sealed; `[erased]` once the account is erased."""
    sealed = {r.account_id for r in rows if is_sealed(r.outcome)}
    keys = await vault().for_reading(conn, sealed) if sealed else {}
    return [view(r, open_value(keys.get(r.account_id), r.account_id, r.outcome)) for r in rows]


async def list_tasks(conn: AsyncConnection, **where: Any) -> list[TaskView]:
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
    campaign_id: str | None = None,
    follow_up: str | None = None,
    sort: str = "created",
    now: datetime | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[TaskView], str | None]:
    """One page and the cursor of the next page (None on the last one): newest first, or with
    `sort="follow_up"` the earliest follow-up first (tasks with a follow-up date only), or with
    `sort="expected_recovery"` the largest expected recovery of the account's model score first (in the
    reporting currency; accounts without a score, or in a currency without a rate, last). `follow_up`: `due`
    (follow-up date at or before `now`), `set` (has one), `none` (has none). Each task carries its account's
    latest score (band, expected recovery) when it has one."""
    c, sc = tasks.c, account_scores.c
    rows_q = select(
        tasks,
        sc.band.label("risk_band"),
        sc.risk_score.label("risk_score"),
        sc.expected_recovery_minor.label("expected_recovery_minor"),
        sc.currency.label("expected_recovery_currency"),
    ).select_from(tasks.outerjoin(account_scores, sc.account_id == c.account_id))
    if sort == "follow_up":
        q = paging.keyset(rows_q, (c.follow_up_at, c.task_id), cursor, limit, (False, False))
        q = q.where(c.follow_up_at.is_not(None))
        key: Any = lambda r: (r.follow_up_at, r.task_id)  # noqa: E731
    elif sort == "expected_recovery":
        recovery = func.coalesce(sc.expected_recovery_reporting_minor, -1)
        q = paging.keyset(
            rows_q.add_columns(recovery.label("recovery_key")), (recovery, c.task_id), cursor, limit
        )
        key = lambda r: (r.recovery_key, r.task_id)  # noqa: E731
    else:
        q = paging.keyset(rows_q, (c.created_at, c.task_id), cursor, limit)
        key = lambda r: (r.created_at, r.task_id)  # noqa: E731
    for col, val in (
        (c.status, status),
        (c.account_id, account_id),
        (c.assignee, assignee),
        (c.team, team),
        (c.campaign_id, campaign_id),
    ):
        if val is not None:
            q = q.where(col == val)
    if follow_up == "due":
        q = q.where(c.follow_up_at <= (now or datetime.now(UTC)))
    elif follow_up == "set":
        q = q.where(c.follow_up_at.is_not(None))
    elif follow_up == "none":
        q = q.where(c.follow_up_at.is_(None))
    rows, after = paging.page((await conn.execute(q)).all(), limit, key)
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


async def set_follow_up(
    conn: AsyncConnection,
    task_id: str,
    when: datetime | None,
    now: datetime,
    who: Principal,
    reason: str = "",
) -> TaskView | None:
    """Set (or clear) an open task's follow-up date, audited with the before and after in the same
    transaction (the reason sealed with the account's key). None when the task is not open."""
    before = (
        await conn.execute(
            select(tasks.c.account_id, tasks.c.follow_up_at)
            .where(tasks.c.task_id == task_id, tasks.c.status == "open")
            .with_for_update()
        )
    ).first()
    if before is None:
        return None
    r = (
        await conn.execute(
            update(tasks).where(tasks.c.task_id == task_id).values(follow_up_at=when).returning(*tasks.c)
        )
    ).one()
    await append(
        conn,
        actor=who.name,
        role=who.role,
        action="task.follow_up",
        entity="task",
        entity_id=task_id,
        before={"follow_up_at": before.follow_up_at.isoformat() if before.follow_up_at else None},
        after={"follow_up_at": when.isoformat() if when else None, "account_id": before.account_id},
        reason=await seal_for(conn, before.account_id, reason),
        at=now,
    )
    return (await _views(conn, [r]))[0]


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
    """Open tasks past three quarters of their SLA (working time) become `at_risk`; past all of it,
    `breached`: the assignee and the team lead are notified (console and email, once per breach: see
    notifications/service.py); still open `supervisor_after` later they become `escalated`: one priority
    up and reassigned to the supervisors' team. Returns (breached, escalated)."""
    at_risk = (
        select(tasks.c.task_id)
        .where(
            tasks.c.status == "open",
            tasks.c.sla_state == "ok",
            tasks.c.sla_at_risk_at <= now,
            tasks.c.sla_due_at > now,
        )
        .limit(deps.timer_batch)
        .with_for_update(skip_locked=True)  # replicas take disjoint rows, never wait on each other
    )
    await conn.execute(
        update(tasks).where(tasks.c.task_id.in_(at_risk.scalar_subquery())).values(sla_state="at_risk")
    )
    breached = (
        await conn.execute(
            select(tasks)
            .where(
                tasks.c.status == "open",
                tasks.c.sla_state.in_(("ok", "at_risk")),
                tasks.c.sla_due_at <= now,
            )
            .limit(deps.timer_batch)
            .with_for_update(skip_locked=True)
        )
    ).all()
    for t in breached:
        await conn.execute(update(tasks).where(tasks.c.task_id == t.task_id).values(sla_state="breached"))
        await notify_breach(conn, t, now, deps.console_url)
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
