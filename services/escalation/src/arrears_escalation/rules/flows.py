"""Run the actions of the rules a trigger matched: open a case, create a task, resume dunning."""

from __future__ import annotations

from datetime import datetime, timedelta

from arrears_shared.events import OverrideRequested
from arrears_shared.stream.transaction import Transaction
from arrears_shared.working_time import ALWAYS_OPEN, TeamCalendar, add_working_time

from ..cases.service import open_case
from ..deps import Deps
from ..tasks.assignment import team_for
from ..tasks.service import create_task
from ..teams.service import calendar_of
from .models import CreateTask, OpenCase, ResumeDunning, Rule, Trigger
from .service import Facts, matching


async def case_calendar(tx: Transaction, rule: Rule, deps: Deps) -> TeamCalendar:
    """A case is due in the working time of the team that works it: the team of the rule's first task
    (after the priority redirection), 24/7 when the rule makes no task or the team has no calendar."""
    task = next((a for a in rule.actions if isinstance(a, CreateTask)), None)
    if task is None:
        return ALWAYS_OPEN
    return await calendar_of(tx.conn, team_for(task.team, task.priority, deps.priority_teams))


async def escalate(
    tx: Transaction,
    deps: Deps,
    trigger: Trigger,
    facts: Facts,
    *,
    account_id: str,
    trigger_id: str,
    detail: str,
    now: datetime,
    promise_id: str | None = None,
) -> list[str]:
    """Apply every enabled rule matching (trigger, facts). Idempotent per trigger_id: a case that was not
    opened (this trigger already did, or the same reason is open) skips the rest of that rule's actions.
    `promise_id`: the promise the trigger is about (a task it creates carries it). Returns the ids of the
    rules that acted."""
    acted: list[str] = []
    for rule in matching(deps.rules, trigger, facts, deps.rates):
        case_id: str | None = None
        for action in rule.actions:
            if isinstance(action, OpenCase):
                case_id = await open_case(
                    tx.conn,
                    tx,
                    account_id=account_id,
                    reason=action.reason,
                    priority=action.priority,
                    trigger_id=trigger_id,
                    detail=detail,
                    now=now,
                    rule_id=rule.id,
                    due_at=add_working_time(
                        now, timedelta(hours=action.due_in_hours), await case_calendar(tx, rule, deps)
                    ),
                )
                if case_id is None:
                    break
            elif isinstance(action, CreateTask):
                await create_task(
                    tx.conn,
                    deps,
                    account_id=account_id,
                    case_id=case_id,
                    kind=action.kind,
                    team=action.team,
                    priority=action.priority,
                    due_in=timedelta(hours=action.due_in_hours),
                    sla=timedelta(hours=action.sla_hours),
                    rule_id=rule.id,
                    trigger_id=trigger_id,
                    detail=detail,
                    now=now,
                    promise_id=promise_id,
                )
            elif isinstance(action, ResumeDunning):
                tx.emit(
                    OverrideRequested(
                        account_id=account_id,
                        override_id=f"rule:{rule.id}:{trigger_id}",
                        action="resume_dunning",
                        reason=detail,
                        actor=f"rule:{rule.id}",
                        role="system",
                        requested_at=now,
                    ),
                    id=f"override:rule:{rule.id}:{trigger_id}",
                    time=now,
                )
        acted.append(rule.id)
    return acted
