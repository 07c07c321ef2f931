"""Run the actions of the rules a trigger matched: open a case, create a task, resume dunning."""

from __future__ import annotations

from datetime import datetime, timedelta

from arrears_shared.events import OverrideRequested
from arrears_shared.stream.transaction import Transaction

from ..cases.service import open_case
from ..deps import Deps
from ..tasks.service import create_task
from .models import CreateTask, OpenCase, ResumeDunning, Trigger
from .service import Facts, matching


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
) -> list[str]:
    """Apply every enabled rule matching (trigger, facts). Idempotent per trigger_id: a case that was not
    opened (this trigger already did, or the same reason is open) skips the rest of that rule's actions.
    Returns the ids of the rules that acted."""
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
                    due_at=now + timedelta(hours=action.due_in_hours),
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
