"""Settling deliveries (inside a transaction): final states with their `message-sent`, requeues, the
recording of accepted sends, failure with dead-lettering of the notice, and invalid recipients."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import topics
from ..cloudevents import OutgoingRecord, encode
from ..events import DeliveryStatus
from ..stream.dead_letter import dead_letter_record
from ..stream.transaction import Transaction
from .binding import Binding
from .channel import DeliveryRow, SendResult
from .outcome import Outcomes
from .sealing import invalid_address, live_keys
from .settings import DispatchSettings

log = logging.getLogger("arrears_shared.delivery.engine")  # the engine's one logger, whichever stage logs


class DeliveryFailed(Exception):
    """Names the failure of a dead-lettered notice in the DLQ headers (`kafka_dlt-exception-fqcn`)."""


# The DLQ header names the class where it has always lived (and is still importable from).
DeliveryFailed.__module__ = "arrears_shared.delivery.engine"


class Settler:
    def __init__(self, bound: Binding, settings: DispatchSettings, outcomes: Outcomes) -> None:
        self.bound = bound
        self.settings = settings
        self.outcomes = outcomes

    @property
    def dlq_group(self) -> str:
        return self.settings.dispatch_dlq_group or self.bound.service

    async def requeue(
        self,
        tx: Transaction,
        row: DeliveryRow,
        at: datetime,
        reason: str,
        *,
        attempts: int,
        guard_attempts: int | None = None,
    ) -> None:
        await tx.conn.execute(
            text(
                f"UPDATE {self.bound.schema}.deliveries SET state = 'queued', next_attempt_at = :at, attempts = :n,"
                " last_error = :e, updated_at = now() WHERE notice_id = :id"
                + (" AND state = 'sending' AND attempts = :g" if guard_attempts is not None else "")
            ),
            {"at": at, "n": max(0, attempts), "e": reason, "id": row.notice_id, "g": guard_attempts},
        )

    async def settle(
        self,
        tx: Transaction,
        row: DeliveryRow,
        status: DeliveryStatus,
        *,
        reason: str | None = None,
        permanent: bool = False,
        provider_message_id: str | None = None,
        thread_id: str | None = None,
        guard_attempts: int | None = None,
    ) -> bool:
        """Final state + its `message-sent` event in one transaction. False if the row changed under us."""
        guard = " AND state = 'sending' AND attempts = :g" if guard_attempts is not None else ""
        res = await tx.conn.execute(
            text(
                f"UPDATE {self.bound.schema}.deliveries SET state = :st, provider_message_id = :pid, thread_id = :tid,"
                f" last_error = :e, updated_at = now() WHERE notice_id = :id{guard}"
            ),
            {
                "st": status.value,
                "pid": provider_message_id,
                "tid": thread_id,
                "e": reason,
                "id": row.notice_id,
                "g": guard_attempts,
            },
        )
        if res.rowcount == 0:
            _changed_under_us(row, status)
            return False
        self.outcomes.emit(
            tx,
            row,
            status,
            reason=reason,
            permanent=permanent,
            provider_message_id=provider_message_id,
            thread_id=thread_id,
        )
        return True

    async def sent(self, accepted: Sequence[tuple[DeliveryRow, SendResult]]) -> None:
        """Record accepted sends (and their `message-sent` events) in one transaction."""
        async with self.bound.tx() as tx:
            done = {
                r.notice_id
                for r in await tx.conn.execute(
                    text(
                        f"UPDATE {self.bound.schema}.deliveries d SET state = 'sent', provider_message_id = x.pid,"
                        " thread_id = x.tid, last_error = NULL, updated_at = now()"
                        " FROM jsonb_to_recordset(CAST(:js AS jsonb)) AS x(notice_id text, pid text, tid text,"
                        " g int) WHERE d.notice_id = x.notice_id AND d.state = 'sending' AND d.attempts = x.g"
                        " RETURNING d.notice_id"
                    ),
                    {"js": _sent_json(accepted)},
                )
            }
            for row, res in accepted:
                if row.notice_id not in done:
                    _changed_under_us(row, DeliveryStatus.SENT)
                    continue
                self.outcomes.emit(
                    tx,
                    row,
                    DeliveryStatus.SENT,
                    provider_message_id=res.provider_message_id,
                    thread_id=res.thread_id,
                )

    async def fail_and_dead_letter(
        self, tx: Transaction, row: DeliveryRow, reason: str, *, guard_attempts: int | None = None
    ) -> None:
        """The last attempt failed: `message-sent` failed with the reason, and the notice goes to the
        DLQ under a fresh id. `arrears dlq replay` of that record revives the delivery exactly once."""
        if not await self.settle(
            tx, row, DeliveryStatus.FAILED, reason=reason[:500], guard_attempts=guard_attempts
        ):
            return
        dlq_id = f"dlq:{self.bound.service}:{row.notice_id}:{time.time_ns()}"
        await tx.conn.execute(
            text(f"UPDATE {self.bound.schema}.deliveries SET dlq_id = :d WHERE notice_id = :id"),
            {"d": dlq_id, "id": row.notice_id},
        )
        tx.records.append(self.dead_letter_record(row, reason, dlq_id))

    def dead_letter_record(self, row: DeliveryRow, reason: str, dlq_id: str) -> OutgoingRecord:
        """The notice as a DLQ record of `notice-due` (no partition or offset: it was never consumed as is)."""
        rec = encode(row.notice, source=self.bound.service, id=dlq_id)
        return dead_letter_record(
            rec.key,
            rec.value,
            rec.headers,
            original_topic=topics.NOTICE_DUE,
            original_partition=-1,
            original_offset=-1,
            original_timestamp=int(row.created_at.timestamp() * 1000),
            group=self.dlq_group,
            service=self.bound.service,
            error=DeliveryFailed(reason),
            attempts=row.attempts,
            message=reason,
        )

    async def mark_invalid(self, tx: Transaction, row: DeliveryRow, reason: str) -> None:
        """A permanent rejection of the recipient (invalid number, hard bounce): later notices to this
        address on this channel fail at once instead of being sent. The address is stored sealed, found by its
        blind index; nothing is recorded for an account erased meanwhile."""
        await mark_invalid(
            tx.conn, self.bound.schema, row.account_id, row.channel, row.to_address, reason, row.notice_id
        )

    async def in_doubt(self, row: DeliveryRow, reason: str) -> None:
        """The send may have been accepted: the row stays `sending` (`updated_at` is when the send began,
        which bounds the reconciliation window), with the reason."""
        async with self.bound.engine.begin() as conn:
            await conn.execute(
                text(
                    f"UPDATE {self.bound.schema}.deliveries SET last_error = :e WHERE notice_id = :id"
                    " AND state = 'sending'"
                ),
                {"e": reason, "id": row.notice_id},
            )


async def mark_invalid(
    conn: AsyncConnection,
    schema: str,
    account_id: str,
    channel: str,
    address: str,
    reason: str,
    notice_id: str | None = None,
) -> None:
    """Record an invalid address of an account (sealed, with its blind index), unless the account is erased."""
    keys = await live_keys(conn, [account_id])
    if account_id not in keys:
        return
    await conn.execute(
        text(
            f"INSERT INTO {schema}.invalid_channels (account_id, channel, address, address_bidx, reason,"
            " notice_id) VALUES (:a, :c, :t, :b, :r, :n) ON CONFLICT DO NOTHING"
        ),
        {
            "a": account_id,
            "c": channel,
            **invalid_address(keys[account_id], account_id, channel, address),
            "r": reason[:500],
            "n": notice_id,
        },
    )


def _sent_json(accepted: Sequence[tuple[DeliveryRow, SendResult]]) -> str:
    return json.dumps(
        [
            {
                "notice_id": row.notice_id,
                "pid": res.provider_message_id,
                "tid": res.thread_id,
                "g": row.attempts,
            }
            for row, res in accepted
        ]
    )


def _changed_under_us(row: DeliveryRow, status: DeliveryStatus) -> None:
    log.warning(
        "delivery changed under us; outcome not recorded",
        extra={"notice_id": row.notice_id, "status": status.value},
    )
