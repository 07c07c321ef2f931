"""Gmail push renewal: `users.watch` again every day, so push notifications never stop.

A watch expires after 7 days (https://developers.google.com/workspace/gmail/api/guides/push#renewing_mailbox_watch:
"call watch at least every 7 days ... we recommend calling watch once per day"). The schedule is a row per
mailbox in ``responses.gmail_watch`` (durable across restarts); a renewal locks it with
``FOR UPDATE SKIP LOCKED``, so one replica renews a mailbox and the others skip it, like the other timers.
A failed renewal is rolled back and tried again at the next check; the poller keeps reading either way.
Every mailbox of the sending pool has its own watch (and row); one failing renewal does not stop the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from arrears_shared.providers.gmail import GmailClient
from arrears_shared.service import Context
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import text

from ..settings import ResponsesSettings
from .mailboxes import close_all, reading_mailboxes

log = logging.getLogger(__name__)
# renew at least this long before the watch would expire, whatever the renewal interval says
EXPIRY_MARGIN = timedelta(hours=1)


async def renew_watch_once(
    tx: Transaction, client: GmailClient, s: ResponsesSettings, mailbox: str | None = None
) -> bool:
    """Renew `mailbox`'s watch (default: the single ARREARS_GMAIL_SENDER) if it is due and no other replica
    holds it. True when renewed."""
    assert s.responses_gmail_watch_topic
    mailbox = mailbox or s.gmail_sender or "me"
    sc = tx.schema
    await tx.conn.execute(
        text(f"INSERT INTO {sc}.gmail_watch (mailbox) VALUES (:m) ON CONFLICT DO NOTHING"), {"m": mailbox}
    )
    due = (
        await tx.conn.execute(
            text(
                f"SELECT topic FROM {sc}.gmail_watch WHERE mailbox = :m"
                " AND (next_renewal_at <= now() OR topic IS DISTINCT FROM :t) FOR UPDATE SKIP LOCKED"
            ),
            {"m": mailbox, "t": s.responses_gmail_watch_topic},
        )
    ).first()
    if due is None:
        return False
    watch = await client.watch(s.responses_gmail_watch_topic, label_ids=["INBOX"])
    expires = datetime.fromtimestamp(watch.expiration_ms / 1000, UTC)
    now = datetime.now(UTC)
    next_at = min(now + timedelta(seconds=s.responses_gmail_watch_renew_s), expires - EXPIRY_MARGIN)
    await tx.conn.execute(
        text(
            f"""UPDATE {sc}.gmail_watch SET topic = :t, history_id = :h, expires_at = :e, renewed_at = now(),
                next_renewal_at = :n, renewals = renewals + 1, last_error = NULL WHERE mailbox = :m"""
        ),
        {"t": s.responses_gmail_watch_topic, "h": watch.history_id, "e": expires, "n": next_at, "m": mailbox},
    )
    log.info(
        "gmail watch renewed",
        extra={"mailbox": mailbox, "expires_at": expires.isoformat(), "next_at": next_at.isoformat()},
    )
    return True


def make_watch_loop() -> Callable[[Context], Awaitable[None]]:
    async def gmail_watch_loop(ctx: Context) -> None:
        s: ResponsesSettings = ctx.settings  # type: ignore[assignment]
        if not (s.responses_gmail_enabled and s.responses_gmail_watch_topic):
            return
        boxes = reading_mailboxes(s)
        try:
            while not ctx.stopping.is_set():
                for box in boxes:
                    try:
                        async with ctx.transaction() as tx:
                            await renew_watch_once(tx, box.client, s, box.address)
                    except Exception as e:
                        log.warning(
                            "gmail watch renewal failed",
                            extra={"mailbox": box.address, "error": f"{type(e).__name__}: {e}"[:300]},
                        )
                try:
                    await asyncio.wait_for(ctx.stopping.wait(), timeout=s.responses_gmail_watch_check_s)
                except TimeoutError:
                    pass
        finally:
            close_all(boxes)

    return gmail_watch_loop
