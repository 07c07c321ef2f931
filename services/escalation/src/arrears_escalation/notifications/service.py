"""SLA-breach notifications: one per (task, recipient), for the task's assignee and its team's lead.

`notify_breach` runs in the transaction that marks the task breached (check_sla, rows taken with
`FOR UPDATE SKIP LOCKED`), and the primary key (kind, task, recipient) makes a second attempt a no-op, so a
breach notifies each person once across replicas, restarts and re-runs. A recipient with a notification
address (the `emails` of any team, the task's own team first) also gets an email: a `notification_emails`
row in the same transaction, sent by the mailer (notifications/mailer.py). What a notification says is what
the recipient may see anyway: the task kind, the account id and a console link; no customer data.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import Any

from arrears_shared import paging
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import metrics
from ..teams.service import lead_and_emails
from .models import Inbox, NotificationView, notification_emails, notifications

log = logging.getLogger(__name__)
MESSAGE_ID_DOMAIN = "notify.arrears"


def message_id_for(notification_id: int, task_id: str, recipient: str) -> str:
    """Deterministic Message-ID of a notification's email: the in-doubt reconciliation searches for it."""
    digest = hashlib.sha256(f"{notification_id}:{task_id}:{recipient}".encode()).hexdigest()[:40]
    return f"<{digest}.{MESSAGE_ID_DOMAIN}>"


def console_link(console_url: str, task: Any) -> str:
    base = console_url.rstrip("/")
    return f"{base}/accounts/{task.account_id}#task-{task.task_id}"


async def notify_breach(conn: AsyncConnection, task: Any, now: datetime, console_url: str) -> int:
    """Notify the assignee and the team lead of `task`'s SLA breach (each once). Returns how many were new."""
    lead, emails = await lead_and_emails(conn, task.team)
    recipients: dict[str, str] = {}
    if task.assignee:
        recipients[task.assignee] = "assignee"
    if lead:
        recipients.setdefault(lead, "lead")  # a lead who is the assignee is told once, as the assignee
    created = 0
    title = f"SLA breached: {task.kind} ({task.priority}) for account {task.account_id}"
    for recipient, why in recipients.items():
        row = (
            await conn.execute(
                insert(notifications)
                .values(
                    kind="sla_breach",
                    task_id=task.task_id,
                    recipient=recipient,
                    why=why,
                    account_id=task.account_id,
                    team=task.team,
                    title=title,
                    link=console_link(console_url, task),
                    created_at=now,
                )
                .on_conflict_do_nothing()
                .returning(notifications.c.id)
            )
        ).first()
        if row is None:
            continue
        created += 1
        metrics.NOTIFICATIONS.labels("sla_breach", why).inc()
        address = emails.get(recipient)
        if address:
            await conn.execute(
                insert(notification_emails)
                .values(
                    notification_id=row.id,
                    address=address,
                    message_id=message_id_for(row.id, task.task_id, recipient),
                    state="pending",
                    attempts=0,
                    next_attempt_at=now,
                    updated_at=now,
                )
                .on_conflict_do_nothing()
            )
    if not recipients:
        log.warning("SLA breach with nobody to notify (no assignee, no team lead)", extra={"team": task.team})
    return created


async def inbox(
    conn: AsyncConnection,
    recipient: str,
    *,
    unread_only: bool = False,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[Inbox, str | None]:
    """One page of the recipient's notifications, newest first, with their unread count; and the cursor of
    the next page (None on the last one)."""
    n = notifications
    q = paging.keyset(select(n).where(n.c.recipient == recipient), (n.c.created_at, n.c.id), cursor, limit)
    if unread_only:
        q = q.where(n.c.read_at.is_(None))
    rows, after = paging.page((await conn.execute(q)).all(), limit, lambda r: (r.created_at, r.id))
    unread = (
        await conn.execute(
            select(func.count()).select_from(n).where(n.c.recipient == recipient, n.c.read_at.is_(None))
        )
    ).scalar_one()
    return Inbox(unread=unread, items=[NotificationView.model_validate(r._asdict()) for r in rows]), after


async def mark_read(conn: AsyncConnection, recipient: str, ids: list[int] | None, now: datetime) -> list[int]:
    """Mark the recipient's own notifications read (`ids`, or all when None). Returns the ids that changed."""
    q = (
        update(notifications)
        .where(notifications.c.recipient == recipient, notifications.c.read_at.is_(None))
        .values(read_at=now)
        .returning(notifications.c.id)
    )
    if ids is not None:
        q = q.where(notifications.c.id.in_(ids))
    return sorted(r.id for r in await conn.execute(q))
