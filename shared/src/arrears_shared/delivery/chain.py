"""Runs the check chain (`checks`) over a claimed batch and renders the rows that pass it: what is stopped
is settled or requeued here, in the claim's transaction; the rest comes back with its rendered message."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from ..events import DeliveryStatus
from ..stream.transaction import Transaction
from .channel import Channel, DeliveryRow, Rendered, ThreadRef
from .checks import Check, Scope, Verdict
from .settle import Settler


@dataclass(slots=True)
class Checked:
    sendable: list[tuple[DeliveryRow, Rendered]] = field(default_factory=list)
    handled: int = 0  # rows settled or deferred without a send


class CheckChain:
    def __init__(self, checks: Sequence[Check], channel: Channel, settle: Settler) -> None:
        self.checks = list(checks)
        self.channel = channel
        self.settle = settle

    async def __call__(self, tx: Transaction, schema: str, rows: Sequence[DeliveryRow]) -> Checked:
        """The rows to send (at most one per account, in order) with their rendered messages."""
        scope = Scope(tx, schema, self.channel.channel, sorted({r.account_id for r in rows}))
        loaded: list[tuple[Callable[[DeliveryRow], Any], bool]] = []
        for load in self.checks:
            check = await load(scope)
            loaded.append((check, inspect.iscoroutinefunction(check)))
        threaded = getattr(self.channel, "threaded", False)
        threads = await self._threads(scope) if threaded else {}
        scope.now = datetime.now(UTC)
        out = Checked()
        for row in rows:
            verdict: Verdict | None = None
            for check, is_async in loaded:  # the first check that stops the row decides
                verdict = await check(row) if is_async else check(row)
                if verdict is not None:
                    break
            if verdict is None:
                rendered = self._render(row, threads.get(row.account_id) if threaded else None, threaded)
                if not isinstance(rendered, Verdict):
                    scope.sending.add(row.account_id)
                    out.sendable.append((row, rendered))
                    continue
                verdict = rendered
            if await self._record(tx, row, verdict):
                out.handled += 1
        return out

    def _render(self, row: DeliveryRow, thread: ThreadRef | None, threaded: bool) -> Rendered | Verdict:
        """The stored rendering (a resend uses what was rendered the first time), else a fresh one; a
        notice the channel cannot render fails permanently."""
        if row.rendered is not None:
            return row.rendered
        try:
            if threaded:
                return self.channel.render(row.notice, thread)
            return self.channel.render(row.notice)
        except ValueError as e:
            return Verdict("fail", f"render: {e}"[:500])

    async def _record(self, tx: Transaction, row: DeliveryRow, v: Verdict) -> bool:
        """Settle or requeue a stopped row; False when it is left as it is (`skip`)."""
        if v.action == "skip":
            return False
        if v.action == "defer":
            assert v.until is not None
            await self.settle.requeue(tx, row, v.until, v.reason, attempts=row.attempts)
        elif v.action == "suppress":
            await self.settle.settle(tx, row, DeliveryStatus.SUPPRESSED, reason=v.reason)
        else:
            await self.settle.settle(tx, row, DeliveryStatus.FAILED, reason=v.reason, permanent=True)
        if v.after is not None:
            v.after()
        return True

    async def _threads(self, scope: Scope) -> dict[str, ThreadRef]:
        """The last ten notices sent to each account on this channel (email threading), oldest first."""
        rows = (
            await scope.tx.conn.execute(
                text(
                    f"SELECT account_id, notice_id, thread_id FROM (SELECT account_id, notice_id, thread_id,"
                    " updated_at, row_number() OVER (PARTITION BY account_id ORDER BY updated_at DESC) AS k"
                    f" FROM {scope.schema}.deliveries WHERE account_id = ANY(:a) AND channel = :c"
                    " AND state = 'sent') t WHERE k <= 10 ORDER BY account_id, updated_at DESC"
                ),
                {"a": scope.accounts, "c": scope.channel},
            )
        ).all()
        by: dict[str, list[Any]] = {}
        for r in rows:
            by.setdefault(r.account_id, []).append(r)
        return {
            a: ThreadRef(tuple(r.notice_id for r in reversed(rs)), rs[0].thread_id) for a, rs in by.items()
        }
