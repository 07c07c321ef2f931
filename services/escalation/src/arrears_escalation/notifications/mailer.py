"""Sends the notification emails through the Gmail API (the real client), each exactly once.

Why not `notice-due` and dispatcher-email: those carry messages *to customers*. A staff email keyed by an
account would be indexed by responses as the account's contact address, written back to the sheet as the
last contact, counted in the account's timeline and sealed with (and erased with) the customer's key. A
notification is the platform talking to its own people; it has its own small state machine here.

Exactly once, the same way as a delivery (docs/architecture.md, "External sends"):

1. **claim**: in one transaction, rows due (`pending`, or `sending` for longer than `in_doubt_after`, i.e.
   left in doubt by a crash or a timeout) are locked `FOR UPDATE SKIP LOCKED` (replicas take disjoint rows),
   set to `sending` (`attempts + 1`) and committed *before* the provider call;
2. **reconcile** a row that was already `sending`: Gmail is searched for its deterministic Message-ID
   (`rfc822msgid:`); found = it was sent, settle it `sent` without sending again;
3. **send** with that Message-ID; **settle** `sent` / back to `pending` with backoff (rate limits, quota,
   outages, expired credentials) / `failed` (rejected for good, or `max_attempts` used). An in-doubt send
   (a timeout after the request went out) stays `sending`: step 2 decides it later.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from arrears_shared.delivery.render import one_line
from arrears_shared.providers.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderInDoubt,
    ProviderPermanentError,
    ProviderRateLimited,
)
from arrears_shared.providers.gmail import GmailClient
from arrears_shared.service import Context
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import metrics
from ..deps import Deps
from ..staff_mail import staff_gmail
from .models import notification_emails, notifications

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MailerConfig:
    sender: str
    batch: int = 20
    in_doubt_after: timedelta = timedelta(minutes=2)
    max_attempts: int = 10
    backoff: timedelta = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class Claimed:
    notification_id: int
    address: str
    message_id: str
    in_doubt: bool
    attempts: int
    title: str
    link: str
    why: str
    created_at: datetime


def render(c: Claimed, sender: str) -> bytes:
    """The email: subject = the notification's title, body = why you get it and the console link. No
    customer data beyond the account id."""
    m = EmailMessage()
    m["From"] = sender
    m["To"] = c.address
    m["Subject"] = one_line(c.title)
    m["Message-ID"] = c.message_id
    m["Date"] = format_datetime(c.created_at)
    m["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to it
    role = "the task's assignee" if c.why == "assignee" else "the team lead"
    m.set_content(
        f"{one_line(c.title)}\n\nYou get this as {role}. Open it in the console:\n{c.link}\n\n"
        "Notifications: see and mark them read on the console's Notifications page.\n"
    )
    return bytes(m)


async def claim(conn: AsyncConnection, now: datetime, cfg: MailerConfig) -> list[Claimed]:
    e, n = notification_emails, notifications
    due = (
        await conn.execute(
            select(e, n.c.title, n.c.link, n.c.why, n.c.created_at)
            .join(n, n.c.id == e.c.notification_id)
            .where(
                ((e.c.state == "pending") & (e.c.next_attempt_at <= now))
                | ((e.c.state == "sending") & (e.c.updated_at <= now - cfg.in_doubt_after))
            )
            .order_by(e.c.next_attempt_at)
            .limit(cfg.batch)
            .with_for_update(of=e, skip_locked=True)
        )
    ).all()
    for r in due:
        await conn.execute(
            update(e)
            .where(e.c.notification_id == r.notification_id)
            .values(state="sending", attempts=e.c.attempts + 1, updated_at=now)
        )
    return [
        Claimed(
            notification_id=r.notification_id,
            address=r.address,
            message_id=r.message_id,
            in_doubt=r.state == "sending",
            attempts=r.attempts + 1,
            title=r.title,
            link=r.link,
            why=r.why,
            created_at=r.created_at,
        )
        for r in due
    ]


async def settle(conn: AsyncConnection, nid: int, now: datetime, **values: Any) -> None:
    await conn.execute(
        update(notification_emails)
        .where(notification_emails.c.notification_id == nid, notification_emails.c.state == "sending")
        .values(updated_at=now, **values)
    )


async def deliver(client: GmailClient, c: Claimed, cfg: MailerConfig, now: datetime) -> dict[str, Any]:
    """The provider side of one claimed email: the values to settle it with (empty: leave it in doubt)."""
    try:
        if c.in_doubt:
            found = await client.find_by_message_id(c.message_id)
            if found:
                metrics.NOTIFICATION_EMAILS.labels("reconciled").inc()
                return {"state": "sent", "provider_message_id": found[0], "error": None}
        sent = await client.send_raw(render(c, cfg.sender))
    except ProviderInDoubt as exc:
        log.warning(
            "notification email in doubt; reconciled later", extra={"notification_id": c.notification_id}
        )
        metrics.NOTIFICATION_EMAILS.labels("in_doubt").inc()
        return {"error": str(exc)[:500]}
    except ProviderRateLimited as exc:
        wait = max(timedelta(seconds=exc.retry_after_s), cfg.backoff)
        return {"state": "pending", "next_attempt_at": now + wait, "error": str(exc)[:500]}
    except ProviderPermanentError as exc:
        if isinstance(exc, ProviderAuthError) and c.attempts < cfg.max_attempts:  # credentials: fixable
            return {
                "state": "pending",
                "next_attempt_at": now + cfg.backoff * c.attempts,
                "error": str(exc)[:500],
            }
        metrics.NOTIFICATION_EMAILS.labels("failed").inc()
        log.error(
            "notification email refused", extra={"notification_id": c.notification_id, "error": str(exc)}
        )
        return {"state": "failed", "error": str(exc)[:500]}
    except ProviderError as exc:  # transient: outage, 5xx
        if c.attempts >= cfg.max_attempts:
            metrics.NOTIFICATION_EMAILS.labels("failed").inc()
            return {"state": "failed", "error": str(exc)[:500]}
        return {
            "state": "pending",
            "next_attempt_at": now + cfg.backoff * c.attempts,
            "error": str(exc)[:500],
        }
    metrics.NOTIFICATION_EMAILS.labels("sent").inc()
    return {"state": "sent", "provider_message_id": sent.id, "error": None}


async def send_due(
    ctx: Context, client: GmailClient, cfg: MailerConfig, clock: Callable[[], datetime]
) -> int:
    """One round: claim (committed), call Gmail for each, settle each in its own transaction."""
    async with ctx.transaction() as tx:
        claimed = await claim(tx.conn, clock(), cfg)
    for c in claimed:
        values = await deliver(client, c, cfg, clock())
        if values:
            async with ctx.transaction() as tx:
                await settle(tx.conn, c.notification_id, clock(), **values)
    return len(claimed)


def make_mailer_loop(
    deps: Deps, make_client: Callable[[], GmailClient], cfg: MailerConfig, every_s: float
) -> Callable[[Context], Awaitable[None]]:
    async def mailer_loop(ctx: Context) -> None:
        client = make_client()
        try:
            while True:
                handled = 0
                try:
                    handled = await send_due(ctx, client, cfg, deps.clock.now)
                except Exception:
                    log.exception("notification mailer round failed; retrying")
                if handled >= cfg.batch:
                    continue
                if not await ctx.sleep(every_s):
                    return
        finally:
            client.close()

    return mailer_loop


def mailer_loops(settings: Any, deps: Deps) -> list[Callable[[Context], Awaitable[None]]]:
    """The mailer loop when notification emails are on (`ARREARS_ESCALATION_NOTIFY_EMAIL`); none otherwise.
    Refuses to start with emails on but no sender or credentials (a silent no-email would look like no breach)."""
    if not settings.escalation_notify_email:
        return []
    if not settings.escalation_notify_sender:
        raise ValueError("ARREARS_ESCALATION_NOTIFY_EMAIL needs ARREARS_ESCALATION_NOTIFY_SENDER")
    token = settings.escalation_notify_gmail_token
    if token is None and not settings.escalation_notify_gmail_credentials_file:
        raise ValueError(
            "ARREARS_ESCALATION_NOTIFY_EMAIL needs ARREARS_ESCALATION_NOTIFY_GMAIL_TOKEN or "
            "ARREARS_ESCALATION_NOTIFY_GMAIL_CREDENTIALS_FILE"
        )

    def make_client() -> GmailClient:
        return staff_gmail(
            settings.escalation_notify_sender,
            token=token.get_secret_value() if token is not None else None,
            credentials_file=settings.escalation_notify_gmail_credentials_file,
            api_endpoint=settings.escalation_notify_gmail_api_endpoint,
        )

    cfg = MailerConfig(
        sender=settings.escalation_notify_sender, max_attempts=settings.escalation_notify_max_attempts
    )
    return [make_mailer_loop(deps, make_client, cfg, settings.escalation_notify_poll_s)]
