"""In-doubt reconciliation: a row left in `sending` longer than the in-doubt age is looked up at the
provider: found -> `sent`, accepted but undelivered -> `failed`, not found -> `queued` again (or failed and
dead-lettered after the last attempt), cannot tell -> failed and dead-lettered, never resent. A row of an
erased account is not looked up (its address is gone): suppressed, never resent."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from sqlalchemy import text

from .. import telemetry as m
from ..events import DeliveryStatus
from ..providers.errors import ProviderError
from ..stream.transaction import Transaction
from ..vault.keys import vault
from . import limiter
from .binding import Binding
from .channel import CannotReconcile, Channel, DeliveryRow, Undelivered
from .claim import HORIZON_S
from .rows import COLUMNS, to_row
from .settings import DispatchSettings
from .settle import Settler

log = logging.getLogger("arrears_shared.delivery.engine")  # the engine's one logger, whichever stage logs


class Reconciler:
    def __init__(self, bound: Binding, settings: DispatchSettings, channel: Channel, settle: Settler) -> None:
        self.bound = bound
        self.settings = settings
        self.channel = channel
        self.settle = settle

    async def reconcile_in_doubt(self, older_than_s: float | None = None) -> int:
        """Settle every delivery left in `sending` longer than the in-doubt age. Returns how many were
        settled. Each row is locked while the provider is asked, so replicas never reconcile one twice."""
        age = self.settings.dispatch_in_doubt_after_s if older_than_s is None else older_than_s
        async with self.bound.engine.connect() as conn:
            ids = [
                r.notice_id
                for r in await conn.execute(
                    text(
                        f"SELECT notice_id FROM {self.bound.schema}.deliveries WHERE state = 'sending'"
                        " AND updated_at < now() - make_interval(secs => :age) ORDER BY updated_at LIMIT 500"
                    ),
                    {"age": age},
                )
            ]
        lanes = asyncio.Semaphore(max(1, min(4, self.settings.dispatch_max_in_flight)))

        async def one(notice_id: str) -> bool:
            async with lanes:
                return await self._reconcile_one(notice_id, age)

        # Rows are independent (each locked in its own transaction): ask the provider about several at once.
        return sum(await asyncio.gather(*(one(i) for i in ids)))

    async def _reconcile_one(self, notice_id: str, age: float) -> bool:
        """Settle one in-doubt row; False when it was not (taken by another replica, lookup failed)."""
        async with self.bound.tx() as tx:
            r = (
                await tx.conn.execute(
                    text(
                        f"SELECT {COLUMNS} FROM {self.bound.schema}.deliveries WHERE notice_id = :id AND state = 'sending'"
                        " AND updated_at < now() - make_interval(secs => :age) FOR UPDATE SKIP LOCKED"
                    ),
                    {"id": notice_id, "age": age},
                )
            ).one_or_none()
            if r is None:
                return False
            row = to_row(r, await vault().for_reading(tx.conn, [r.account_id]))
            if row.erased or row.unreadable:
                # no address to look the message up by, and nothing may be sent again: settled as it is
                await self.settle.settle(
                    tx,
                    row,
                    DeliveryStatus.SUPPRESSED if row.erased else DeliveryStatus.FAILED,
                    reason=("erased" if row.erased else "unreadable")
                    + ": in doubt, not reconciled, never resent",
                )
                return True
            # The provider counts a lookup against the same per-key rate as a send: take a slot too.
            if not await self._lookup_slot():
                return False  # the limiter is paused: the next pass goes on
            started = time.perf_counter()
            try:
                found = await asyncio.wait_for(
                    self.channel.reconcile(row), timeout=self.settings.dispatch_send_timeout_s
                )
            except CannotReconcile as e:
                await self.settle.fail_and_dead_letter(
                    tx, row, f"in doubt and cannot be reconciled; not resent: {e}"
                )
                return True
            except (ProviderError, TimeoutError) as e:
                self._observe("error", started)
                log.warning(
                    "reconciliation lookup failed; will retry",
                    extra={"notice_id": notice_id, "error": f"{type(e).__name__}: {e}"[:200]},
                )
                return False
            self._observe("ok", started)
            await self._settle_found(tx, row, found)
            return True

    def _observe(self, outcome: str, started: float) -> None:
        m.PROVIDER_SECONDS.labels(self.bound.service, self.channel.provider, "reconcile", outcome).observe(
            time.perf_counter() - started
        )

    async def _settle_found(self, tx: Transaction, row: DeliveryRow, found: str | Undelivered | None) -> None:
        notice_id = row.notice_id
        if isinstance(found, Undelivered):
            # Accepted by the provider, refused by the carrier: a failed delivery, never a resend.
            await self.settle.settle(
                tx,
                row,
                DeliveryStatus.FAILED,
                reason=found.reason[:500],
                provider_message_id=found.provider_message_id,
            )
            log.info("in-doubt delivery found undelivered at provider", extra={"notice_id": notice_id})
        elif found is not None:
            await self.settle.settle(tx, row, DeliveryStatus.SENT, provider_message_id=found)
            log.info("in-doubt delivery found at provider", extra={"notice_id": notice_id})
        elif row.attempts >= self.settings.dispatch_max_attempts:
            await self.settle.fail_and_dead_letter(
                tx, row, f"not accepted by the provider after {row.attempts} attempts"
            )
        else:
            await self.settle.requeue(
                tx, row, datetime.now(UTC), "in doubt: not found at provider; resend", attempts=row.attempts
            )
            log.info("in-doubt delivery not found at provider; requeued", extra={"notice_id": notice_id})

    async def _lookup_slot(self) -> bool:
        c = self.channel
        async with self.bound.engine.begin() as conn:
            got = await limiter.reserve(
                conn, self.bound.schema, c.limiter_name, c.rate_per_s, c.burst, 1, 2 * HORIZON_S
            )
        if not got.delays:
            return False
        await asyncio.sleep(got.delays[0])
        return True
