"""Gmail replies by `users.history.list` from a stored history id; a full resync when the id expired. Every
mailbox of the sending pool is polled with its own cursor (`gmail_cursor`, keyed by the mailbox), on its own
schedule: one mailbox failing (its credentials, its quota) backs off alone while the others are read.

One poll = one Postgres transaction: the cursor row is locked (`FOR UPDATE SKIP LOCKED`, so replicas never
poll together), the new messages are fetched and recorded, the cursor advances, COMMIT. A crash before the
commit re-reads the same history next time; `reply_id = gmail:<id>` makes a re-read a no-op.
A Pub/Sub push (`POST /webhooks/gmail/push`) only wakes the loop: the history id in it is not trusted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from arrears_shared.providers.gmail import GmailClient, HistoryExpired
from arrears_shared.service import Context
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import text

from ..settings import ResponsesSettings
from .mailboxes import ReadMailbox, close_all, own_addresses, reading_mailboxes
from .parse import parse_email
from .service import record_email

log = logging.getLogger(__name__)
SKIP_LABELS = frozenset({"SENT", "DRAFT", "SPAM", "TRASH"})


@dataclass
class PollResult:
    outcomes: dict[str, int] = field(default_factory=dict)
    full_sync: bool = False
    skipped: bool = False

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


async def _handle(
    tx: Transaction,
    client: GmailClient,
    message_id: str,
    own: frozenset[str],
    result: PollResult,
    settings: ResponsesSettings,
) -> None:
    msg = await client.get_message(message_id, format="raw")
    if SKIP_LABELS.intersection(msg.label_ids) or msg.raw is None:
        result.count("skipped")
        return
    email = parse_email(msg.raw)
    if email.from_address in own:
        result.count("skipped")
        return
    at = (
        datetime.fromtimestamp(msg.internal_date_ms / 1000, UTC)
        if msg.internal_date_ms
        else datetime.now(UTC)
    )
    result.count(
        await record_email(
            tx, email, gmail_id=msg.id, thread_id=msg.thread_id, received_at=at, settings=settings
        )
    )


async def poll_once(
    tx: Transaction, client: GmailClient, s: ResponsesSettings, mailbox: str | None = None
) -> PollResult:
    """One poll of `mailbox` (default: the single ARREARS_GMAIL_SENDER) inside `tx` (the caller commits)."""
    result = PollResult()
    mailbox = mailbox or s.gmail_sender or "me"
    own = own_addresses(s)
    sc = tx.schema
    row = (
        await tx.conn.execute(
            text(f"SELECT history_id FROM {sc}.gmail_cursor WHERE mailbox = :m FOR UPDATE SKIP LOCKED"),
            {"m": mailbox},
        )
    ).first()
    if row is None:
        exists = (
            await tx.conn.execute(text(f"SELECT 1 FROM {sc}.gmail_cursor WHERE mailbox = :m"), {"m": mailbox})
        ).first()
        if exists:  # another replica is polling
            result.skipped = True
            return result
        profile = await client.get_profile()
        await tx.conn.execute(
            text(
                f"INSERT INTO {sc}.gmail_cursor (mailbox, history_id) VALUES (:m, :h) ON CONFLICT DO NOTHING"
            ),
            {"m": mailbox, "h": profile.history_id},
        )
        log.info("gmail cursor initialised", extra={"mailbox": mailbox, "history_id": profile.history_id})
        return result
    try:
        history = await client.history(row.history_id)
    except HistoryExpired:
        return await _full_sync(tx, client, s, mailbox, own, result)
    next_id = row.history_id
    handled = 0
    for record in history.records:
        if handled >= s.responses_gmail_max_per_poll:
            break
        for ref in record.messages_added:
            if SKIP_LABELS.intersection(ref.label_ids):  # our own sends: not even fetched
                result.count("skipped")
                continue
            await _handle(tx, client, ref.id, own, result, s)
            handled += 1
        next_id = record.id
    else:
        next_id = history.history_id
    await tx.conn.execute(
        text(f"UPDATE {sc}.gmail_cursor SET history_id = :h, updated_at = now() WHERE mailbox = :m"),
        {"h": next_id, "m": mailbox},
    )
    return result


async def _full_sync(
    tx: Transaction,
    client: GmailClient,
    s: ResponsesSettings,
    mailbox: str,
    own: frozenset[str],
    result: PollResult,
) -> PollResult:
    """The stored history id expired: read the recent inbox (already-seen messages are no-ops), then
    continue from the mailbox's current history id (read first, so nothing arriving meanwhile is lost)."""
    result.full_sync = True
    profile = await client.get_profile()
    ids = await client.search(f"in:inbox newer_than:{s.responses_gmail_resync_days}d")
    log.warning("gmail history id expired; full resync", extra={"mailbox": mailbox, "messages": len(ids)})
    for message_id in ids:
        await _handle(tx, client, message_id, own, result, s)
    await tx.conn.execute(
        text(
            f"""UPDATE {tx.schema}.gmail_cursor SET history_id = :h, full_syncs = full_syncs + 1,
                last_full_sync_at = now(), updated_at = now() WHERE mailbox = :m"""
        ),
        {"h": profile.history_id, "m": mailbox},
    )
    return result


def make_gmail_loop(wake: asyncio.Event) -> Callable[[Context], Awaitable[None]]:
    async def gmail_loop(ctx: Context) -> None:
        s: ResponsesSettings = ctx.settings  # type: ignore[assignment]
        if not s.responses_gmail_enabled:
            return
        boxes = reading_mailboxes(s)
        loop = asyncio.get_running_loop()
        due = {b.address: 0.0 for b in boxes}
        failures = {b.address: 0 for b in boxes}

        async def poll(box: ReadMailbox) -> None:
            try:
                async with ctx.transaction() as tx:
                    result = await poll_once(tx, box.client, s, box.address)
                failures[box.address] = 0
                if result.outcomes:
                    log.info(
                        "gmail poll",
                        extra={"mailbox": box.address, "outcomes": result.outcomes, "full": result.full_sync},
                    )
            except Exception as e:
                failures[box.address] += 1
                log.warning(
                    "gmail poll failed",
                    extra={"mailbox": box.address, "error": f"{type(e).__name__}: {e}"[:300]},
                )
            n = failures[box.address]
            due[box.address] = loop.time() + (s.responses_gmail_poll_s if n == 0 else min(300.0, 2.0**n))

        try:
            while not ctx.stopping.is_set():
                # the mailboxes due are read side by side: a slow one (a hanging request) delays no other
                await asyncio.gather(*(poll(box) for box in boxes if due[box.address] <= loop.time()))
                wake.clear()
                waiter = asyncio.create_task(wake.wait())
                stopper = asyncio.create_task(ctx.stopping.wait())
                done, _ = await asyncio.wait(
                    {waiter, stopper},
                    timeout=max(0.0, min(due.values()) - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for t in (waiter, stopper):
                    t.cancel()
                if waiter in done:  # a push: every mailbox that is not backing off is read now
                    for box in boxes:
                        if failures[box.address] == 0:
                            due[box.address] = 0.0
        finally:
            close_all(boxes)

    return gmail_loop
