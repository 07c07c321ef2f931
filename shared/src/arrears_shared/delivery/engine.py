"""The delivery state machine: notice-due -> deliveries row -> provider -> message-sent.

States: `queued` -> `sending` (committed BEFORE the provider call) -> `sent` | `failed`; `queued` ->
`suppressed` (opted out / gate / expired). A row found in `sending` older than
`ARREARS_DISPATCH_IN_DOUBT_AFTER_S` is in doubt and is reconciled with the provider: found -> `sent`, not
found -> `queued` again. So a crash before the provider call never loses a notice (it is resent), and a crash
after the provider accepted never sends twice (it is found).

Workers claim one due row at a time with `FOR UPDATE SKIP LOCKED` (highest priority first), so any number
of workers and replicas share the queue; all of them draw tokens from the one limiter row in Postgres.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .. import telemetry as m
from .. import topics
from ..cloudevents import Envelope, OutgoingRecord, encode
from ..events import DeliveryStatus, Intent, MessageSent, NoticeDue, ReplyReceived
from ..providers.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderInDoubt,
    ProviderPermanentError,
    ProviderQuotaExhausted,
    ProviderRateLimited,
    ProviderTransientError,
)
from ..stream import dead_letter as dl
from ..stream.dead_letter import is_infrastructure_error
from ..stream.transaction import Transaction, transaction
from . import limiter
from .breaker import CircuitBreaker
from .channel import (
    CannotReconcile,
    Channel,
    DeliveryRow,
    Rendered,
    Route,
    SendResult,
    ThreadRef,
    Undelivered,
)
from .gate import Gate, compliance_gate
from .settings import DispatchSettings

log = logging.getLogger(__name__)

_COLUMNS = (
    "notice_id, account_id, channel, to_address, payload, rendered, priority, state, attempts, "
    "next_attempt_at, provider_message_id, last_error, created_at, updated_at, route"
)
PRIMARY = "primary"
FALLBACK = "fallback"
# Limiter slots are reserved at most this far ahead: a claimed row waits at most this long for its slot.
_HORIZON_S = 1.0
HOLD_RECHECK_S = 300.0  # a held delivery (possible opt-out awaiting a person) is looked at again this often


@dataclass(frozen=True, slots=True)
class Claimed:
    row: DeliveryRow  # now `sending`
    rendered: Rendered
    delay_s: float  # from the reservation until the row's limiter slot


@dataclass(slots=True)
class ClaimBatch:
    claimed: list[Claimed] = field(default_factory=list)
    handled: int = 0  # rows settled or deferred without a send
    retry_in_s: float | None = None  # no limiter slot within the horizon: look again after this
    started: float = 0.0  # time.monotonic() of the reservation (the delays count from it)


def _retry_in(ahead_s: float, rate: float, burst: float) -> float:
    """Seconds until a limiter whose schedule runs `ahead_s` ahead has a slot within the horizon again."""
    interval = 1.0 / rate
    return min(5.0, max(0.005, ahead_s + interval - max(1.0, burst) * interval - _HORIZON_S))


class HostContext(Protocol):
    """The part of `arrears_shared.service.Context` the engine needs."""

    engine: AsyncEngine
    schema: str
    service: str
    stopping: asyncio.Event

    @property
    def relay(self) -> Any: ...


def _loads(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str | bytes) else v


def _row(r: Any) -> DeliveryRow:
    payload = _loads(r.payload)
    return DeliveryRow(
        notice_id=r.notice_id,
        account_id=r.account_id,
        channel=r.channel,
        to_address=r.to_address,
        notice=NoticeDue.model_validate(payload),
        rendered=_loads(r.rendered),
        priority=r.priority,
        state=r.state,
        attempts=r.attempts,
        next_attempt_at=r.next_attempt_at,
        provider_message_id=r.provider_message_id,
        last_error=r.last_error,
        created_at=r.created_at,
        updated_at=r.updated_at,
        route=r.route,
    )


def next_utc_midnight(now: datetime) -> datetime:
    return (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)


class DeliveryFailed(Exception):
    """Names the failure of a dead-lettered notice in the DLQ headers (`kafka_dlt-exception-fqcn`)."""


class DeliveryEngine:
    def __init__(
        self,
        channel: Channel,
        settings: DispatchSettings,
        *,
        gate: Gate | None = None,
    ) -> None:
        self.channel = channel
        self.settings = settings
        self.gate: Gate = gate or compliance_gate()
        self._engine: AsyncEngine | None = None
        self._schema = ""
        self._service = ""
        self._wake: Callable[[], None] = lambda: None
        self._limiters_ready = False
        self.fallback: Route | None = getattr(channel, "fallback", None)
        self.daily_quota: int | None = getattr(channel, "daily_quota", None)
        self.breakers = {
            PRIMARY: self._breaker(channel.provider),
            FALLBACK: self._breaker(self.fallback.provider if self.fallback else "none"),
        }
        self._quota_exhausted_until: datetime | None = None
        # Provider calls this replica may still start: a worker claims no more rows than that, so a claimed
        # row never queues behind other sends (it goes at its limiter slot).
        self._capacity = settings.dispatch_max_in_flight
        self._capacity_freed = asyncio.Event()

    def _breaker(self, name: str) -> CircuitBreaker:
        return CircuitBreaker(
            name,
            failure_threshold=self.settings.dispatch_breaker_failures,
            cooldown_s=self.settings.dispatch_breaker_cooldown_s,
            service=self.settings.service_name or "",
        )

    # -- wiring ----------------------------------------------------------------------------------------
    def bind(
        self, engine: AsyncEngine, schema: str, service: str, wake: Callable[[], None] | None = None
    ) -> DeliveryEngine:
        self._engine, self._schema, self._service = engine, schema, service
        self._wake = wake or (lambda: None)
        return self

    @property
    def dlq_topic(self) -> str:
        return topics.dlq_topic(topics.NOTICE_DUE, self.settings.dispatch_dlq_group or self._service)

    async def loop(self, ctx: HostContext) -> None:
        """A `ServiceDefinition.loops` entry: send workers + in-doubt reconciliation until stopping."""
        self.bind(ctx.engine, ctx.schema, ctx.service, ctx.relay.wake)
        try:
            await self.run(ctx.stopping)
        finally:
            close = getattr(self.channel, "aclose", None)
            if close is not None:
                await close()

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("DeliveryEngine is not bound to a database (call bind() or loop())")
        return self._engine

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[Transaction]:
        async with transaction(self.engine, self._schema, self._service) as tx:
            yield tx
            emitted = bool(tx.records)
        if emitted:
            self._wake()

    # -- consumer --------------------------------------------------------------------------------------
    async def handle_batch(self, events: Sequence[Envelope], tx: Transaction) -> None:
        """Consumer handler for `notice-due` and `reply-received`. Replays are no-ops twice over: the inbox
        drops a repeated ce_id, and a notice id already recorded is ignored (ON CONFLICT DO NOTHING).

        The one exception is the replay of a dead-lettered notice: its ce_id is the `dlq_id` the engine gave
        the DLQ record, and only that id revives the failed delivery (once: the id is cleared)."""
        notices: list[dict[str, Any]] = []
        revive: list[dict[str, Any]] = []
        opt_outs: list[dict[str, Any]] = []
        holds: list[dict[str, Any]] = []
        released: list[dict[str, Any]] = []
        invalid: list[dict[str, Any]] = []
        for env in events:
            ev = env.data
            if isinstance(ev, NoticeDue) and ev.channel.value == self.channel.channel:
                notices.append(
                    {
                        "notice_id": ev.notice_id,
                        "account_id": ev.account_id,
                        "channel": ev.channel.value,
                        "to": ev.to,
                        "payload": ev.model_dump_json(),
                        "priority": ev.priority,
                        "due": ev.due_at,
                    }
                )
                if env.id.startswith("dlq:"):
                    revive.append({"id": ev.notice_id, "d": env.id})
            elif isinstance(ev, ReplyReceived):
                if ev.channel.value != self.channel.channel:
                    continue
                if ev.reviewed_by is not None:
                    # a person decided about the reply: its fail-safe hold ends, for good (a replay of the
                    # original reply finds the decided row and holds nothing)
                    released.append(
                        {"a": ev.account_id, "c": ev.channel.value, "r": ev.reply_id, "by": ev.reviewed_by}
                    )
                if ev.intent == Intent.OPT_OUT:
                    opt_outs.append({"a": ev.account_id, "c": ev.channel.value, "r": ev.reply_id})
                elif ev.possible_opt_out and ev.reviewed_by is None:
                    holds.append({"a": ev.account_id, "c": ev.channel.value, "r": ev.reply_id})
            elif (
                isinstance(ev, MessageSent)
                and ev.status is DeliveryStatus.FAILED
                and ev.permanent
                and ev.channel.value == self.channel.channel
                and env.source != (self._service or self.settings.service_name)
            ):
                # A later verdict on an address we sent to (a hard bounce found by the responses service):
                # later notices to it fail at once instead of being sent.
                invalid.append(
                    {
                        "a": ev.account_id,
                        "c": ev.channel.value,
                        "t": ev.to,
                        "r": (ev.reason or "permanent delivery failure")[:500],
                        "n": ev.notice_id,
                    }
                )
        if notices:
            await tx.conn.execute(
                text(
                    f"INSERT INTO {tx.schema}.deliveries (notice_id, account_id, channel, to_address, payload,"
                    " priority, next_attempt_at) VALUES (:notice_id, :account_id, :channel, :to,"
                    " CAST(:payload AS jsonb), :priority, :due) ON CONFLICT (notice_id) DO NOTHING"
                ),
                notices,
            )
        if revive:
            # A failed delivery was never accepted by a provider (in-doubt ones were reconciled first), so
            # sending it again cannot duplicate it. Rows that failed in doubt go back to reconciliation.
            await tx.conn.execute(
                text(
                    f"UPDATE {tx.schema}.deliveries SET state = CASE WHEN route IS NOT NULL AND last_error"
                    " LIKE 'in doubt%' THEN 'sending' ELSE 'queued' END, attempts = 0, dlq_id = NULL,"
                    " next_attempt_at = now(), last_error = 'replayed from the DLQ',"
                    " updated_at = CASE WHEN last_error LIKE 'in doubt%' THEN updated_at ELSE now() END"
                    " WHERE notice_id = :id AND state = 'failed' AND dlq_id = :d"
                ),
                revive,
            )
        if invalid:
            await tx.conn.execute(
                text(
                    f"INSERT INTO {tx.schema}.invalid_channels (account_id, channel, address, reason, notice_id)"
                    " VALUES (:a, :c, :t, :r, :n) ON CONFLICT DO NOTHING"
                ),
                invalid,
            )
        if opt_outs:
            await tx.conn.execute(
                text(
                    f"INSERT INTO {tx.schema}.opt_outs (account_id, channel, source_reply_id)"
                    " VALUES (:a, :c, :r) ON CONFLICT DO NOTHING"
                ),
                opt_outs,
            )
        if holds:
            await tx.conn.execute(
                text(
                    f"INSERT INTO {tx.schema}.contact_holds (account_id, channel, source_reply_id, reason)"
                    " VALUES (:a, :c, :r, 'possible opt-out awaiting a person') ON CONFLICT DO NOTHING"
                ),
                holds,
            )
        if released:
            await tx.conn.execute(
                text(
                    f"INSERT INTO {tx.schema}.contact_holds (account_id, channel, source_reply_id, reason,"
                    " released_at, released_by) VALUES (:a, :c, :r, 'decided by a person', now(), :by)"
                    " ON CONFLICT (account_id, channel, source_reply_id) DO UPDATE SET"
                    f" released_at = coalesce({tx.schema}.contact_holds.released_at, now()),"
                    f" released_by = coalesce({tx.schema}.contact_holds.released_by, EXCLUDED.released_by)"
                ),
                released,
            )
            # what waited for the decision is due again now (the opt-out check above still applies)
            await tx.conn.execute(
                text(
                    f"UPDATE {tx.schema}.deliveries SET next_attempt_at = now() WHERE account_id = :a"
                    " AND state = 'queued' AND last_error LIKE 'held:%'"
                ),
                [{"a": r["a"]} for r in released],
            )

    # -- workers ---------------------------------------------------------------------------------------
    async def run(self, stopping: asyncio.Event) -> None:
        await self.ensure_limiter()
        start = getattr(self.channel, "start", None)
        if start is not None:
            await start()
        tasks = [
            asyncio.create_task(self._worker(stopping, i), name=f"send-worker-{i}")
            for i in range(self.settings.dispatch_workers)
        ]
        tasks.append(asyncio.create_task(self._reconciler(stopping), name="in-doubt-reconciler"))
        try:
            await stopping.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def ensure_limiter(self) -> None:
        if not self._limiters_ready:
            async with self.engine.begin() as conn:
                await limiter.ensure(conn, self._schema, self.channel.limiter_name)
                if self.fallback is not None:
                    await limiter.ensure(conn, self._schema, self.fallback.limiter_name)
            self._limiters_ready = True

    async def _worker(self, stopping: asyncio.Event, n: int) -> None:
        failures = 0
        while not stopping.is_set():
            try:
                done, retry_in = await self.process_batch()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as e:
                failures += 1
                level = logging.WARNING if is_infrastructure_error(e) else logging.ERROR
                log.log(
                    level,
                    "send worker error",
                    exc_info=level == logging.ERROR,
                    extra={"worker": n, "error": f"{type(e).__name__}: {e}"[:300]},
                )
                await _sleep(stopping, min(30.0, 0.5 * 2 ** min(failures, 6)))
                continue
            if not done:
                await _sleep(
                    stopping, retry_in if retry_in is not None else self.settings.dispatch_idle_poll_s
                )

    async def _reconciler(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.reconcile_in_doubt()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("reconciliation pass failed", extra={"error": f"{type(e).__name__}: {e}"[:300]})
            await _sleep(stopping, self.settings.dispatch_reconcile_interval_s)

    # -- routes ----------------------------------------------------------------------------------------
    def _primary_usable(self, now: datetime) -> bool:
        if self._quota_exhausted_until is not None and now < self._quota_exhausted_until:
            return False
        return self.breakers[PRIMARY].would_allow()

    def choose_route(self, now: datetime | None = None) -> str | None:
        """The route the next send takes: the primary provider while its circuit is closed (or half-open
        with no trial running) and its daily quota lasts, else the fallback route; None = wait."""
        now = now or datetime.now(UTC)
        if self._primary_usable(now):
            return PRIMARY
        if self.fallback is not None and self.breakers[FALLBACK].would_allow():
            return FALLBACK
        return None

    def _route_params(self, route: str) -> tuple[str, float, float]:
        r: Any = self.fallback if route == FALLBACK else self.channel
        return r.limiter_name, r.rate_per_s, r.burst

    # -- one batch of deliveries -----------------------------------------------------------------------
    async def process_one(self) -> bool:
        """Claim the most urgent due delivery and take it as far as it goes. False when nothing was due
        (or no route can send now: the notices wait in the queue)."""
        done, _ = await self.process_batch(1)
        return done > 0

    async def process_batch(self, limit: int | None = None) -> tuple[int, float | None]:
        """Claim up to `limit` due deliveries in one transaction, send them concurrently (each at its
        limiter slot) and record the accepted ones in one transaction. Returns (deliveries taken as far
        as they go now, seconds to wait before the limiter has a slot again or None)."""
        want = await self._take_capacity(limit or self.settings.dispatch_batch_size)
        try:
            batch = await self.claim_batch(want)
        finally:
            self._give_capacity(want)
        if not batch.claimed:
            return batch.handled, batch.retry_in_s
        self._capacity -= len(batch.claimed)  # given back one by one as the sends finish
        results = await asyncio.gather(
            *(self._send_at_slot(batch.started, c) for c in batch.claimed), return_exceptions=True
        )
        accepted = [
            (c.row, r) for c, r in zip(batch.claimed, results, strict=True) if isinstance(r, SendResult)
        ]
        if accepted:
            # A crash before this commit leaves the rows in `sending`: reconciliation finds them sent.
            await self._settle_sent(accepted)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return len(batch.claimed) + batch.handled, None

    async def _send_at_slot(self, started: float, c: Claimed) -> SendResult | None:
        """Wait for the row's limiter slot, then make the provider call. A send that could no longer start
        well inside the in-doubt window (the process was starved) is not made: the row stays `sending`
        and reconciliation resends it, so no send can still be in flight when a row is reconciled."""
        await asyncio.sleep(max(0.0, started + c.delay_s - time.monotonic()))
        s = self.settings
        slack = max(0.5, (s.dispatch_in_doubt_after_s - s.dispatch_send_timeout_s) / 2)
        try:
            if time.monotonic() > started + c.delay_s + slack:
                log.warning(
                    "send started too late; left for reconciliation",
                    extra={"notice_id": c.row.notice_id, "late_s": time.monotonic() - started - c.delay_s},
                )
                return None
            return await self._attempt(c.row, c.rendered)
        finally:
            self._give_capacity(1)

    async def _take_capacity(self, limit: int) -> int:
        while self._capacity <= 0:
            self._capacity_freed.clear()
            await self._capacity_freed.wait()
        n = min(limit, self._capacity)
        self._capacity -= n
        return n

    def _give_capacity(self, n: int) -> None:
        self._capacity += n
        self._capacity_freed.set()

    async def _threads_of(self, tx: Transaction, accounts: Sequence[str]) -> dict[str, ThreadRef]:
        """The last ten notices sent to each account on this channel (email threading), oldest first."""
        rows = (
            await tx.conn.execute(
                text(
                    f"SELECT account_id, notice_id, thread_id FROM (SELECT account_id, notice_id, thread_id,"
                    " updated_at, row_number() OVER (PARTITION BY account_id ORDER BY updated_at DESC) AS k"
                    f" FROM {self._schema}.deliveries WHERE account_id = ANY(:a) AND channel = :c"
                    " AND state = 'sent') t WHERE k <= 10 ORDER BY account_id, updated_at DESC"
                ),
                {"a": list(accounts), "c": self.channel.channel},
            )
        ).all()
        by: dict[str, list[Any]] = {}
        for r in rows:
            by.setdefault(r.account_id, []).append(r)
        return {
            a: ThreadRef(tuple(r.notice_id for r in reversed(rs)), rs[0].thread_id) for a, rs in by.items()
        }

    async def claim_for_send(self) -> tuple[DeliveryRow, Rendered] | str | None:
        """Claim one due row, apply the last-moment checks, take a limiter slot, commit `sending` and wait
        for the slot. Returns the row (now `sending`) and its rendered message, "handled" when the row was
        settled without a send (suppressed, deferred, failed to render), or None if nothing is due or no
        route or limiter slot may send now."""
        batch = await self.claim_batch(1)
        if batch.claimed:
            c = batch.claimed[0]
            await asyncio.sleep(max(0.0, batch.started + c.delay_s - time.monotonic()))
            return c.row, c.rendered
        return "handled" if batch.handled else None

    async def claim_batch(self, limit: int) -> ClaimBatch:
        """Claim up to `limit` due rows (most urgent first, `FOR UPDATE SKIP LOCKED`), apply the
        last-moment checks to each, reserve limiter slots (and daily quota) for the ones to send and commit
        them as `sending`, all in one transaction. `updated_at` of a claimed row is its slot: when its send
        may begin, which bounds the in-doubt window.

        The batch is sized by the limiter first (a plain read), so a slow provider account claims one or
        two rows at a time and a fast one up to `limit`. Rows left over (no slot, no quota, a second notice
        to an account already in the batch) are left queued, untouched."""
        await self.ensure_limiter()
        s = self._schema
        route = self.choose_route()
        if route is None:
            return ClaimBatch()
        if self.breakers[route].state != "closed":
            limit = 1  # a half-open circuit lets exactly one trial send through
        name, rate, burst = self._route_params(route)
        async with self._tx() as tx:
            if route == PRIMARY and self.daily_quota is not None:
                # another replica may have been told the quota is used up: take the fallback route too
                paused = await self._route_paused_until(tx, datetime.now(UTC))
                if paused is not None:
                    self._quota_exhausted_until = paused
                    route = self.choose_route()
                    if route is None:
                        return ClaimBatch()
                    name, rate, burst = self._route_params(route)
            tokens, ahead = await limiter.available(tx.conn, s, name, rate, burst, _HORIZON_S)
            if tokens == 0:
                return ClaimBatch(retry_in_s=_retry_in(ahead, rate, burst))
            rows = [
                _row(r)
                for r in await tx.conn.execute(
                    text(
                        f"SELECT {_COLUMNS} FROM {s}.deliveries WHERE state = 'queued' AND next_attempt_at <= now()"
                        " ORDER BY priority DESC, next_attempt_at LIMIT :n FOR UPDATE SKIP LOCKED"
                    ),
                    {"n": max(1, min(limit, tokens))},
                )
            ]
            if not rows:
                return ClaimBatch()
            batch = ClaimBatch()
            sendable = await self._checked(tx, rows, batch)
            now = datetime.now(UTC)
            quota_used = 0
            if sendable and route == PRIMARY and self.daily_quota is not None:
                paused = await self._route_paused_until(tx, now)
                quota_used = 0 if paused is not None else await self._use_quota(tx, now, len(sendable))
                if paused is None and quota_used < len(sendable):
                    paused = await self._window_frees_at(tx, now)
                    log.warning(
                        "daily quota used up (rolling 24 h); primary route paused",
                        extra={"quota": self.daily_quota, "until": paused.isoformat()},
                    )
                if paused is not None:
                    self._quota_exhausted_until = paused
                if quota_used == 0:
                    if self.fallback is None or not self.breakers[FALLBACK].would_allow():
                        return batch  # the rows stay queued, unchanged
                    route = FALLBACK
                    name, rate, burst = self._route_params(route)
                    sendable = sendable[:1]
                else:
                    sendable = sendable[:quota_used]
            if not sendable:
                return batch
            reserved = await limiter.reserve(tx.conn, s, name, rate, burst, len(sendable), _HORIZON_S)
            batch.started = time.monotonic()
            granted = len(reserved.delays)
            if quota_used > granted:
                await self._unuse_quota(tx, now, quota_used - granted)
            if granted == 0:
                batch.retry_in_s = _retry_in(reserved.ahead_s, rate, burst)
                return batch
            sendable = sendable[:granted]
            await tx.conn.execute(
                text(
                    f"UPDATE {s}.deliveries d SET state = 'sending', attempts = d.attempts + 1, route = :route,"
                    " rendered = x.rendered, updated_at = clock_timestamp() + make_interval(secs => x.delay)"
                    " FROM jsonb_to_recordset(CAST(:js AS jsonb)) AS x(notice_id text, rendered jsonb,"
                    " delay float8) WHERE d.notice_id = x.notice_id"
                ),
                {
                    "route": route,
                    "js": json.dumps(
                        [
                            {"notice_id": row.notice_id, "rendered": rendered, "delay": delay}
                            for (row, rendered), delay in zip(sendable, reserved.delays, strict=False)
                        ]
                    ),
                },
            )
        for (row, rendered), delay in zip(sendable, reserved.delays, strict=False):
            sending = DeliveryRow(
                **{
                    **_asdict(row),
                    "state": "sending",
                    "attempts": row.attempts + 1,
                    "rendered": rendered,
                    "route": route,
                }
            )
            batch.claimed.append(Claimed(sending, rendered, delay))
        return batch

    async def _checked(
        self, tx: Transaction, rows: Sequence[DeliveryRow], batch: ClaimBatch
    ) -> list[tuple[DeliveryRow, Rendered]]:
        """The last-moment checks of claimed rows (opt-out, invalid channel, expiry, compliance gate) and
        their rendering. Rows that must not be sent are settled or deferred here (counted in
        `batch.handled`); the rest come back with their rendered message. At most one row per account, so
        the frequency cap of the next one sees this one's send."""
        s = self._schema
        ch = self.channel.channel
        accounts = sorted({r.account_id for r in rows})
        opted = {
            r.account_id
            for r in await tx.conn.execute(
                text(f"SELECT account_id FROM {s}.opt_outs WHERE channel = :c AND account_id = ANY(:a)"),
                {"a": accounts, "c": ch},
            )
        }
        held = {
            r.account_id
            for r in await tx.conn.execute(
                text(
                    f"SELECT account_id FROM {s}.contact_holds WHERE channel = :c AND account_id = ANY(:a)"
                    " AND released_at IS NULL"
                ),
                {"a": accounts, "c": ch},
            )
        }
        invalid = {
            (r.account_id, r.address): r.reason
            for r in await tx.conn.execute(
                text(
                    f"SELECT account_id, address, reason FROM {s}.invalid_channels WHERE channel = :c"
                    " AND account_id = ANY(:a)"
                ),
                {"a": accounts, "c": ch},
            )
        }
        recent: dict[str, list[datetime]] = {}
        for r in await tx.conn.execute(
            text(
                f"SELECT account_id, updated_at AS at FROM {s}.deliveries WHERE account_id = ANY(:a)"
                " AND channel = :c AND state = 'sent' AND updated_at > now() - interval '31 days'"
            ),
            {"a": accounts, "c": ch},
        ):
            recent.setdefault(r.account_id, []).append(r.at)
        threaded = getattr(self.channel, "threaded", False)
        threads = await self._threads_of(tx, accounts) if threaded else {}
        now = datetime.now(UTC)
        out: list[tuple[DeliveryRow, Rendered]] = []
        in_batch: set[str] = set()
        for row in rows:
            # An answer to the customer's own message (the opt-out confirmation, the HELP text) is exempt
            # from the opt-out it confirms and from the contact-hours gate; dunning notices never are.
            exempt = not row.notice.is_dunning
            if row.account_id in opted and not exempt:
                await self._settle(tx, row, DeliveryStatus.SUPPRESSED, reason="opted_out")
                batch.handled += 1
                continue
            if row.account_id in held and not exempt:
                # fail-safe: a possible opt-out waits for a person; check again later, never send meanwhile
                until = now + timedelta(seconds=HOLD_RECHECK_S)
                await self._requeue(
                    tx, row, until, "held: possible opt-out awaiting a person", attempts=row.attempts
                )
                batch.handled += 1
                continue
            bad = invalid.get((row.account_id, row.to_address))
            if bad is not None:
                await self._settle(
                    tx, row, DeliveryStatus.FAILED, reason=f"channel_invalid: {bad}"[:500], permanent=True
                )
                batch.handled += 1
                continue
            if row.notice.expires_at is not None and row.notice.expires_at <= now:
                await self._settle(tx, row, DeliveryStatus.SUPPRESSED, reason="expired")
                batch.handled += 1
                continue
            if row.account_id in in_batch:
                continue  # left queued for the next batch
            decision = None if exempt else await self.gate(row.notice, now, recent.get(row.account_id, []))
            if decision is not None and decision.action == "suppress":
                await self._settle(
                    tx, row, DeliveryStatus.SUPPRESSED, reason=f"compliance:{decision.rule or 'gate'}"
                )
                batch.handled += 1
                continue
            if decision is not None and decision.action == "defer":
                until = decision.defer_until or now + timedelta(minutes=15)
                await self._requeue(
                    tx, row, until, f"deferred:{decision.rule or 'gate'}", attempts=row.attempts
                )
                log.info(
                    "delivery deferred",
                    extra={"notice_id": row.notice_id, "rule": decision.rule, "until": until.isoformat()},
                )
                batch.handled += 1
                continue
            rendered = row.rendered
            if rendered is None:
                try:
                    if threaded:
                        rendered = self.channel.render(row.notice, threads.get(row.account_id))
                    else:
                        rendered = self.channel.render(row.notice)
                except ValueError as e:
                    await self._settle(
                        tx, row, DeliveryStatus.FAILED, reason=f"render: {e}"[:500], permanent=True
                    )
                    batch.handled += 1
                    continue
            in_batch.add(row.account_id)
            out.append((row, rendered))
        return out

    async def _use_quota(self, tx: Transaction, now: datetime, n: int) -> int:
        """Take up to `n` sends of the daily quota, counted over the last 24 hours (a rolling window, as
        Gmail counts its sending limit) in per-minute buckets shared by every replica; returns how many."""
        s = self._schema
        name = self.channel.limiter_name
        await tx.conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"{s}.quota:{name}"})
        used = (
            await tx.conn.execute(
                text(
                    f"SELECT coalesce(sum(used), 0) FROM {s}.quota_window WHERE name = :n"
                    " AND bucket > CAST(:now AS timestamptz) - interval '24 hours'"
                ),
                {"n": name, "now": now},
            )
        ).scalar_one()
        granted = max(0, min(n, int(self.daily_quota or 0) - int(used)))
        if granted:
            await tx.conn.execute(
                text(
                    f"INSERT INTO {s}.quota_window (name, bucket, used) VALUES (:n,"
                    " date_trunc('minute', CAST(:now AS timestamptz)), :k) ON CONFLICT (name, bucket) DO UPDATE"
                    f" SET used = {s}.quota_window.used + EXCLUDED.used"
                ),
                {"n": name, "now": now, "k": granted},
            )
            await tx.conn.execute(
                text(
                    f"DELETE FROM {s}.quota_window WHERE name = :n"
                    " AND bucket < CAST(:now AS timestamptz) - interval '25 hours'"
                ),
                {"n": name, "now": now},
            )
        return granted

    async def _unuse_quota(self, tx: Transaction, now: datetime, n: int = 1) -> None:
        await tx.conn.execute(
            text(
                f"UPDATE {self._schema}.quota_window SET used = greatest(0, used - :k) WHERE name = :n"
                " AND bucket = date_trunc('minute', CAST(:now AS timestamptz))"
            ),
            {"n": self.channel.limiter_name, "now": now, "k": n},
        )

    async def _window_frees_at(self, tx: Transaction, now: datetime) -> datetime:
        """When the oldest send of the rolling window leaves it (a slot of the quota frees)."""
        oldest = (
            await tx.conn.execute(
                text(
                    f"SELECT min(bucket) FROM {self._schema}.quota_window WHERE name = :n AND used > 0"
                    " AND bucket > CAST(:now AS timestamptz) - interval '24 hours'"
                ),
                {"n": self.channel.limiter_name, "now": now},
            )
        ).scalar_one()
        if oldest is None:
            return now + timedelta(minutes=1)
        return max(now + timedelta(seconds=1), oldest + timedelta(hours=24, minutes=1))

    async def _route_paused_until(self, tx: Transaction, now: datetime) -> datetime | None:
        """The primary route's pause (the provider said its quota is used up until then), all replicas."""
        until = (
            await tx.conn.execute(
                text(f"SELECT until FROM {self._schema}.route_pauses WHERE name = :n AND until > :now"),
                {"n": self.channel.limiter_name, "now": now},
            )
        ).scalar_one_or_none()
        return until  # type: ignore[no-any-return]

    async def _pause_route(self, tx: Transaction, until: datetime, reason: str) -> None:
        await tx.conn.execute(
            text(
                f"INSERT INTO {self._schema}.route_pauses (name, until, reason) VALUES (:n, :u, :r)"
                " ON CONFLICT (name) DO UPDATE SET until = EXCLUDED.until, reason = EXCLUDED.reason"
            ),
            {"n": self.channel.limiter_name, "u": until, "r": reason[:300]},
        )

    async def send_claimed(self, row: DeliveryRow, rendered: Rendered) -> None:
        """The provider call for a row this worker just moved to `sending`, then its outcome."""
        result = await self._attempt(row, rendered)
        if result is not None:
            await self._settle_sent([(row, result)])

    async def _settle_sent(self, accepted: Sequence[tuple[DeliveryRow, SendResult]]) -> None:
        """Record accepted sends (and their `message-sent` events) in one transaction."""
        async with self._tx() as tx:
            done = {
                r.notice_id
                for r in await tx.conn.execute(
                    text(
                        f"UPDATE {self._schema}.deliveries d SET state = 'sent', provider_message_id = x.pid,"
                        " thread_id = x.tid, last_error = NULL, updated_at = now()"
                        " FROM jsonb_to_recordset(CAST(:js AS jsonb)) AS x(notice_id text, pid text, tid text,"
                        " g int) WHERE d.notice_id = x.notice_id AND d.state = 'sending' AND d.attempts = x.g"
                        " RETURNING d.notice_id"
                    ),
                    {
                        "js": json.dumps(
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
                    },
                )
            }
            for row, res in accepted:
                if row.notice_id not in done:
                    log.warning(
                        "delivery changed under us; outcome not recorded",
                        extra={"notice_id": row.notice_id, "status": "sent"},
                    )
                    continue
                self._emit_outcome(
                    tx,
                    row,
                    DeliveryStatus.SENT,
                    provider_message_id=res.provider_message_id,
                    thread_id=res.thread_id,
                )

    async def _attempt(self, row: DeliveryRow, rendered: Rendered) -> SendResult | None:
        """The provider call. Returns the result when the provider accepted the message (the caller records
        it); every other outcome is recorded here and None returned."""
        route = row.route or PRIMARY
        sender: Any = self.fallback if route == FALLBACK and self.fallback is not None else self.channel
        breaker = self.breakers[route]
        breaker.allow()  # takes the half-open trial slot when the circuit is half-open
        if route == FALLBACK:
            m.DELIVERY_FALLBACKS.labels(self._service, sender.provider).inc()
        started = time.perf_counter()
        outcome = "ok"
        try:
            result: SendResult = await asyncio.wait_for(
                sender.send(row, rendered), timeout=self.settings.dispatch_send_timeout_s
            )
        except ProviderQuotaExhausted as e:
            # e.g. Gmail's 429 "(Mail sending)": the mailbox is paused until the time Gmail names, for every
            # replica (route_pauses); meanwhile the step goes by the fallback route (SMTP relay) if any.
            outcome = "quota"
            breaker.release()
            if route == PRIMARY:
                self._quota_exhausted_until = datetime.now(UTC) + timedelta(seconds=e.retry_after_s)
                async with self._tx() as tx:
                    await self._pause_route(tx, self._quota_exhausted_until, e.message)
                log.warning(
                    "provider quota used up; primary route paused",
                    extra={"until": self._quota_exhausted_until.isoformat(), "error": e.message[:200]},
                )
            await self._on_rate_limited(row, e, route)
            return None
        except ProviderRateLimited as e:
            outcome = "rate_limited"
            breaker.release()
            await self._on_rate_limited(row, e, route)
            return None
        except ProviderAuthError as e:
            # Credentials are a configuration problem, not a problem of this notice: retry like an outage.
            outcome = "auth"
            breaker.failure()
            log.error("provider rejected our credentials", extra={"provider": sender.provider})
            await self._on_transient(row, e)
            return None
        except ProviderTransientError as e:
            outcome = "transient"
            breaker.failure()
            await self._on_transient(row, e)
            return None
        except ProviderPermanentError as e:
            outcome = "permanent"
            breaker.success()
            async with self._tx() as tx:
                await self._mark_invalid(tx, row, e.reason)
                await self._settle(
                    tx,
                    row,
                    DeliveryStatus.FAILED,
                    reason=e.reason[:500],
                    permanent=True,
                    guard_attempts=row.attempts,
                )
            return None
        except (ProviderInDoubt, TimeoutError) as e:
            outcome = "in_doubt"
            breaker.failure()
            await self._on_in_doubt(row, e)
            return None
        except ProviderError as e:
            outcome = "error"
            breaker.failure()
            await self._on_transient(row, e)
            return None
        except Exception as e:
            # Unclassified: we cannot know whether the provider took it. Reconcile before any resend.
            outcome = "error"
            breaker.failure()
            log.exception(
                "unclassified provider error; treating the send as in doubt",
                extra={"notice_id": row.notice_id},
            )
            await self._on_in_doubt(row, e)
            return None
        finally:
            m.PROVIDER_SECONDS.labels(self._service, sender.provider, "send", outcome).observe(
                time.perf_counter() - started
            )
        breaker.success()
        return result

    async def _mark_invalid(self, tx: Transaction, row: DeliveryRow, reason: str) -> None:
        """A permanent rejection of the recipient (invalid number, hard bounce): later notices to this
        address on this channel fail at once instead of being sent."""
        await tx.conn.execute(
            text(
                f"INSERT INTO {self._schema}.invalid_channels (account_id, channel, address, reason, notice_id)"
                " VALUES (:a, :c, :t, :r, :n) ON CONFLICT DO NOTHING"
            ),
            {
                "a": row.account_id,
                "c": row.channel,
                "t": row.to_address,
                "r": reason[:500],
                "n": row.notice_id,
            },
        )

    async def mark_channel_invalid(self, account_id: str, address: str, reason: str) -> None:
        """For signals that arrive later (a DSN bounce, an 'undelivered' status webhook)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    f"INSERT INTO {self._schema}.invalid_channels (account_id, channel, address, reason)"
                    " VALUES (:a, :c, :t, :r) ON CONFLICT DO NOTHING"
                ),
                {"a": account_id, "c": self.channel.channel, "t": address, "r": reason[:500]},
            )

    async def _on_rate_limited(self, row: DeliveryRow, e: ProviderRateLimited, route: str) -> None:
        until = datetime.now(UTC) + timedelta(seconds=max(e.retry_after_s, 0.1))
        name, rate, burst = self._route_params(route)
        async with self._tx() as tx:
            await limiter.pause(tx.conn, self._schema, name, until, rate, burst)
            # Nothing was sent: back to the queue without counting the attempt.
            await self._requeue(
                tx,
                row,
                until
                if not isinstance(e, ProviderQuotaExhausted) or self.fallback is None
                else datetime.now(UTC),
                f"rate_limited: retry after {e.retry_after_s:.1f}s",
                attempts=row.attempts - 1,
                guard_attempts=row.attempts,
            )
        log.info(
            "provider rate limited; limiter paused",
            extra={"notice_id": row.notice_id, "retry_after_s": e.retry_after_s, "route": route},
        )

    async def _on_transient(self, row: DeliveryRow, e: ProviderError) -> None:
        reason = f"{type(e).__name__}: {e.message}"[:500]
        async with self._tx() as tx:
            if row.attempts >= self.settings.dispatch_max_attempts:
                await self._fail_and_dead_letter(
                    tx, row, f"gave up after {row.attempts} attempts: {reason}", guard_attempts=row.attempts
                )
                return
            await self._requeue(
                tx,
                row,
                datetime.now(UTC) + timedelta(seconds=self.backoff(row.attempts)),
                reason,
                attempts=row.attempts,
                guard_attempts=row.attempts,
            )
        log.warning(
            "transient provider error; will retry",
            extra={"notice_id": row.notice_id, "attempts": row.attempts, "error": reason},
        )

    async def _fail_and_dead_letter(
        self, tx: Transaction, row: DeliveryRow, reason: str, *, guard_attempts: int | None = None
    ) -> None:
        """The last attempt failed: `message-sent` failed with the reason, and the notice goes to the
        DLQ under a fresh id. `arrears dlq replay` of that record revives the delivery exactly once."""
        if not await self._settle(
            tx, row, DeliveryStatus.FAILED, reason=reason[:500], guard_attempts=guard_attempts
        ):
            return
        dlq_id = f"dlq:{self._service}:{row.notice_id}:{time.time_ns()}"
        await tx.conn.execute(
            text(f"UPDATE {self._schema}.deliveries SET dlq_id = :d WHERE notice_id = :id"),
            {"d": dlq_id, "id": row.notice_id},
        )
        tx.records.append(self._dead_letter_record(row, reason, dlq_id))

    def _dead_letter_record(self, row: DeliveryRow, reason: str, dlq_id: str) -> OutgoingRecord:
        rec = encode(row.notice, source=self._service, id=dlq_id)
        group = self.settings.dispatch_dlq_group or self._service
        now = datetime.now(UTC)
        err = DeliveryFailed(reason)
        headers = [(k, v) for k, v in rec.headers if k not in dl.DLQ_HEADERS] + [
            (dl.ORIGINAL_TOPIC, topics.NOTICE_DUE.encode()),
            (dl.ORIGINAL_PARTITION, b"-1"),
            (dl.ORIGINAL_OFFSET, b"-1"),
            (dl.ORIGINAL_TIMESTAMP, str(int(row.created_at.timestamp() * 1000)).encode()),
            (dl.ORIGINAL_GROUP, group.encode()),
            (dl.EXCEPTION_FQCN, f"{type(err).__module__}.{type(err).__qualname__}".encode()),
            (dl.EXCEPTION_MESSAGE, reason[:1000].encode("utf-8", "replace")),
            (dl.EXCEPTION_STACKTRACE, b""),
            (dl.ATTEMPTS, str(row.attempts).encode()),
            (dl.SERVICE, self._service.encode()),
            (dl.DEAD_LETTERED_AT, now.isoformat().encode()),
        ]
        return OutgoingRecord(self.dlq_topic, rec.key, rec.value, headers)

    async def _on_in_doubt(self, row: DeliveryRow, e: BaseException) -> None:
        reason = f"in doubt: {type(e).__name__}: {e}"[:500]
        async with self.engine.begin() as conn:
            # Stay in `sending`; `updated_at` is when the send began, which bounds the reconciliation window.
            await conn.execute(
                text(
                    f"UPDATE {self._schema}.deliveries SET last_error = :e WHERE notice_id = :id"
                    " AND state = 'sending'"
                ),
                {"e": reason, "id": row.notice_id},
            )
        log.warning("send in doubt; left for reconciliation", extra={"notice_id": row.notice_id})

    def backoff(self, attempts: int) -> float:
        s = self.settings
        base = min(s.dispatch_backoff_max_s, s.dispatch_backoff_base_s * 2 ** max(0, attempts - 1))
        return base / 2 + random.random() * base / 2

    # -- reconciliation --------------------------------------------------------------------------------
    async def reconcile_in_doubt(self, older_than_s: float | None = None) -> int:
        """Settle every delivery left in `sending` longer than the in-doubt age. Returns how many were
        settled. Each row is locked while the provider is asked, so replicas never reconcile one twice."""
        age = self.settings.dispatch_in_doubt_after_s if older_than_s is None else older_than_s
        s = self._schema
        async with self.engine.connect() as conn:
            ids = [
                r.notice_id
                for r in await conn.execute(
                    text(
                        f"SELECT notice_id FROM {s}.deliveries WHERE state = 'sending'"
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
        s = self._schema
        async with self._tx() as tx:
            r = (
                await tx.conn.execute(
                    text(
                        f"SELECT {_COLUMNS} FROM {s}.deliveries WHERE notice_id = :id AND state = 'sending'"
                        " AND updated_at < now() - make_interval(secs => :age) FOR UPDATE SKIP LOCKED"
                    ),
                    {"id": notice_id, "age": age},
                )
            ).one_or_none()
            if r is None:
                return False
            row = _row(r)
            # The provider counts a lookup against the same per-key rate as a send: take a slot too.
            if not await self._lookup_slot():
                return False  # the limiter is paused: the next pass goes on
            started = time.perf_counter()
            try:
                found = await asyncio.wait_for(
                    self.channel.reconcile(row), timeout=self.settings.dispatch_send_timeout_s
                )
            except CannotReconcile as e:
                await self._fail_and_dead_letter(
                    tx, row, f"in doubt and cannot be reconciled; not resent: {e}"
                )
                return True
            except (ProviderError, TimeoutError) as e:
                m.PROVIDER_SECONDS.labels(self._service, self.channel.provider, "reconcile", "error").observe(
                    time.perf_counter() - started
                )
                log.warning(
                    "reconciliation lookup failed; will retry",
                    extra={"notice_id": notice_id, "error": f"{type(e).__name__}: {e}"[:200]},
                )
                return False
            m.PROVIDER_SECONDS.labels(self._service, self.channel.provider, "reconcile", "ok").observe(
                time.perf_counter() - started
            )
            if isinstance(found, Undelivered):
                # Accepted by the provider, refused by the carrier: a failed delivery, never a resend.
                await self._settle(
                    tx,
                    row,
                    DeliveryStatus.FAILED,
                    reason=found.reason[:500],
                    provider_message_id=found.provider_message_id,
                )
                log.info("in-doubt delivery found undelivered at provider", extra={"notice_id": notice_id})
            elif found is not None:
                await self._settle(tx, row, DeliveryStatus.SENT, provider_message_id=found)
                log.info("in-doubt delivery found at provider", extra={"notice_id": notice_id})
            elif row.attempts >= self.settings.dispatch_max_attempts:
                await self._fail_and_dead_letter(
                    tx, row, f"not accepted by the provider after {row.attempts} attempts"
                )
            else:
                await self._requeue(
                    tx,
                    row,
                    datetime.now(UTC),
                    "in doubt: not found at provider; resend",
                    attempts=row.attempts,
                )
                log.info("in-doubt delivery not found at provider; requeued", extra={"notice_id": notice_id})
            return True

    async def _lookup_slot(self) -> bool:
        c = self.channel
        async with self.engine.begin() as conn:
            got = await limiter.reserve(
                conn, self._schema, c.limiter_name, c.rate_per_s, c.burst, 1, 2 * _HORIZON_S
            )
        if not got.delays:
            return False
        await asyncio.sleep(got.delays[0])
        return True

    # -- state changes (inside a transaction) ---------------------------------------------------------
    async def _requeue(
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
                f"UPDATE {self._schema}.deliveries SET state = 'queued', next_attempt_at = :at, attempts = :n,"
                " last_error = :e, updated_at = now() WHERE notice_id = :id"
                + (" AND state = 'sending' AND attempts = :g" if guard_attempts is not None else "")
            ),
            {"at": at, "n": max(0, attempts), "e": reason, "id": row.notice_id, "g": guard_attempts},
        )

    async def _settle(
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
                f"UPDATE {self._schema}.deliveries SET state = :st, provider_message_id = :pid, thread_id = :tid,"
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
            log.warning(
                "delivery changed under us; outcome not recorded",
                extra={"notice_id": row.notice_id, "status": status.value},
            )
            return False
        self._emit_outcome(
            tx,
            row,
            status,
            reason=reason,
            permanent=permanent,
            provider_message_id=provider_message_id,
            thread_id=thread_id,
        )
        return True

    def _emit_outcome(
        self,
        tx: Transaction,
        row: DeliveryRow,
        status: DeliveryStatus,
        *,
        reason: str | None = None,
        permanent: bool = False,
        provider_message_id: str | None = None,
        thread_id: str | None = None,
    ) -> None:
        n = row.notice
        provider = self.channel.provider
        if row.route == FALLBACK and self.fallback is not None:
            provider = self.fallback.provider
        tx.emit(
            MessageSent(
                account_id=row.account_id,
                notice_id=row.notice_id,
                channel=n.channel,
                status=status,
                provider=provider,
                provider_message_id=provider_message_id,
                thread_id=thread_id,
                to=row.to_address,
                tier=n.tier,
                step=n.step,
                campaign_id=n.campaign_id,
                reason=reason,
                permanent=permanent,
                attempts=row.attempts,
                sent_at=datetime.now(UTC),
                timezone=n.timezone,
                currency=n.currency,
            ),
            id=f"{self._service}:{row.notice_id}:{status.value}:{row.attempts}",
        )
        m.MESSAGES_SENT.labels(self._service, self.channel.channel, status.value).inc()
        if status is DeliveryStatus.FAILED and permanent:
            nxt = fallback_notice(n)
            if nxt is not None:
                # Per policy (the segmenter put the channel order and addresses in the notice): the same
                # step on the next channel. Its notice id is the one the segmenter gives that channel, so
                # the other dispatcher records it once whoever sends it.
                tx.emit(nxt, id=f"{self._service}:{n.notice_id}:fallback:{nxt.channel.value}")
                m.DELIVERY_FALLBACKS.labels(self._service, nxt.channel.value).inc()
                log.info(
                    "permanent failure; falling back to the next channel of the policy",
                    extra={"notice_id": n.notice_id, "fallback_notice_id": nxt.notice_id},
                )


def fallback_notice(n: NoticeDue) -> NoticeDue | None:
    """The notice for the first usable fallback channel of `n`, or None."""
    if not n.is_dunning:
        return None
    for i, ch in enumerate(n.fallback_channels):
        to = n.fallback_to.get(ch)
        if not to or ch == n.channel:
            continue
        suffix = f":{n.channel.value}"
        base = n.notice_id[: -len(suffix)] if n.notice_id.endswith(suffix) else n.notice_id
        rest = n.fallback_channels[i + 1 :]
        return n.model_copy(
            update={
                "notice_id": f"{base}:{ch.value}",
                "channel": ch,
                "to": to,
                "fallback_channels": rest,
                "fallback_to": {c: a for c, a in n.fallback_to.items() if c in rest},
                "due_at": datetime.now(UTC),
            }
        )
    return None


def _asdict(row: DeliveryRow) -> dict[str, Any]:
    return {f: getattr(row, f) for f in row.__dataclass_fields__}


async def _sleep(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
