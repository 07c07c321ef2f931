"""Gmail replies by `users.history.list` from a stored history id; a full resync when the id expired.

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


def make_client(s: ResponsesSettings) -> GmailClient:
    common = {"api_endpoint": s.gmail_api_endpoint, "timeout_s": s.gmail_timeout_s}
    if s.gmail_token is not None:
        return GmailClient.from_user_token(token=s.gmail_token.get_secret_value(), **common)  # type: ignore[arg-type]
    if s.gmail_credentials_file:
        return GmailClient.from_service_account_file(
            s.gmail_credentials_file,
            subject=s.gmail_sender,
            **common,  # type: ignore[arg-type]
        )
    raise ValueError("Gmail polling needs ARREARS_GMAIL_TOKEN or ARREARS_GMAIL_CREDENTIALS_FILE")


async def _handle(
    tx: Transaction, client: GmailClient, message_id: str, own: str, result: PollResult
) -> None:
    msg = await client.get_message(message_id, format="raw")
    if SKIP_LABELS.intersection(msg.label_ids) or msg.raw is None:
        result.count("skipped")
        return
    email = parse_email(msg.raw)
    if own and email.from_address == own:
        result.count("skipped")
        return
    at = (
        datetime.fromtimestamp(msg.internal_date_ms / 1000, UTC)
        if msg.internal_date_ms
        else datetime.now(UTC)
    )
    result.count(await record_email(tx, email, gmail_id=msg.id, thread_id=msg.thread_id, received_at=at))


async def poll_once(tx: Transaction, client: GmailClient, s: ResponsesSettings) -> PollResult:
    """One poll inside `tx` (the caller commits)."""
    result = PollResult()
    mailbox = s.gmail_sender or "me"
    own = s.gmail_sender.strip().lower()
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
        log.info("gmail cursor initialised", extra={"history_id": profile.history_id})
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
            await _handle(tx, client, ref.id, own, result)
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
    tx: Transaction, client: GmailClient, s: ResponsesSettings, mailbox: str, own: str, result: PollResult
) -> PollResult:
    """The stored history id expired: read the recent inbox (already-seen messages are no-ops), then
    continue from the mailbox's current history id (read first, so nothing arriving meanwhile is lost)."""
    result.full_sync = True
    profile = await client.get_profile()
    ids = await client.search(f"in:inbox newer_than:{s.responses_gmail_resync_days}d")
    log.warning("gmail history id expired; full resync", extra={"messages": len(ids)})
    for message_id in ids:
        await _handle(tx, client, message_id, own, result)
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
        client = make_client(s)
        failures = 0
        try:
            while not ctx.stopping.is_set():
                try:
                    async with ctx.transaction() as tx:
                        result = await poll_once(tx, client, s)
                    failures = 0
                    if result.outcomes:
                        log.info("gmail poll", extra={"outcomes": result.outcomes, "full": result.full_sync})
                except Exception as e:
                    failures += 1
                    log.warning("gmail poll failed", extra={"error": f"{type(e).__name__}: {e}"[:300]})
                delay = s.responses_gmail_poll_s if failures == 0 else min(300.0, 2.0**failures)
                wake.clear()
                waiter = asyncio.create_task(wake.wait())
                stopper = asyncio.create_task(ctx.stopping.wait())
                _, pending = await asyncio.wait(
                    {waiter, stopper}, timeout=delay, return_when=asyncio.FIRST_COMPLETED
                )
                for t in (waiter, stopper):
                    t.cancel()
        finally:
            client.close()

    return gmail_loop
