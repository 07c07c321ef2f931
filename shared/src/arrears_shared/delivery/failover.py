"""Channel failover: while every route of a channel has been down longer than
`ARREARS_DISPATCH_FAILOVER_AFTER_S`, queued notices whose step falls back to another channel go by that
channel instead (issue #18: "SMS down -> email").

One transaction per batch switches the notices: each queued row is settled `suppressed` with the reason
`failed_over:<channel>:<new notice id>` (and its `message-sent`, so the timeline says why), and the notice for
the other channel is written to the outbox as a `notice-due` under a deterministic id derived from the
original one (`failover_notice_id`). The row lock (`FOR UPDATE SKIP LOCKED`) and the `state = 'queued'` guard
make the switch happen once; the id makes a replay or a second emitter (the segmenter's own fallback of the
same step) land on the same notice, which the other dispatcher records once. So a step reaches the customer
once: by this channel (the row was sent or is in flight, never switched) or by the other (the row was
switched, never sent).

What is never switched:
- rows in `sending` (claimed, or in doubt awaiting reconciliation): only once reconciled as not sent do they
  return to `queued` and become eligible;
- rows whose step has no fallback to an allowed channel or no address for it (they wait for recovery);
- rows not due yet (quiet hours, a hold, a backoff), of an account stopped at its source, opted out of this
  channel, erased, or expired (the ordinary claim settles those when the channel is back);
- answers to the customer's own message (opt-out confirmations, HELP);
- rows under an incident halt (all sending, this channel, or their campaign: control/halts.py): a halt
  freezes a notice where it is, it does not move it to another channel.

The other dispatcher applies its own checks to the new notice (compliance gate, contact hours, its opt-outs,
stops), as for any notice. Switching back is automatic: as soon as a route may send again (a half-open
circuit with no trial running counts), nothing more is switched and the queue drains by the channel itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import text

from ..control.halts import for_claim
from ..events import DeliveryStatus, NoticeDue
from ..stream.transaction import Transaction
from ..vault.keys import vault
from .binding import Binding
from .channel import DeliveryRow
from .outcome import Outcomes
from .routes import Routes
from .rows import COLUMNS, to_row
from .settings import DispatchSettings
from .tables import WITHDRAWN_SQL

log = logging.getLogger("arrears_shared.delivery.engine")  # the engine's one logger, whichever stage logs

FAILED_OVER = "failed_over"  # prefix of the reason a switched notice is settled with

FAILOVERS = Counter(
    "arrears_delivery_failovers_total",
    "Queued notices switched to another channel while their channel was down",
    ["service", "channel", "to_channel"],
)
FAILOVER_ACTIVE = Gauge(
    "arrears_delivery_failover_active",
    "1 while this replica switches queued notices to another channel (every route down too long)",
    ["service", "channel"],
)
CHANNEL_DOWN_SECONDS = Gauge(
    "arrears_channel_down_seconds",
    "How long every route of the channel has been down in this replica (0 = some route can send)",
    ["service", "channel"],
)


def failover_notice_id(notice_id: str, channel: str, target: str) -> str:
    """The id of `notice_id`'s notice on `target`. The segmenter's ids end with the channel
    (`<account>:<policy>:v<n>:s<step>:c<cycle>:<channel>`): the step on `target` gets the id the segmenter
    gives that step on `target`, so whichever service emits it, the target dispatcher records it once."""
    suffix = f":{channel}"
    if notice_id.endswith(suffix):
        return notice_id[: -len(suffix)] + f":{target}"
    return f"{notice_id}:{FAILED_OVER}:{target}"


def failover_target(notice: NoticeDue, allowed: tuple[str, ...]) -> str | None:
    """The first channel of the step's fallback list that failover may use and the notice has an address for."""
    for c in notice.fallback_channels:
        if c in allowed and notice.fallback_to.get(c):
            return c
    return None


def failover_notice(notice: NoticeDue, target: str, now: datetime) -> NoticeDue:
    """`notice` on `target`: its address, the rest of its fallback list, due now (the target dispatcher's
    gate still decides when)."""
    rest = notice.fallback_channels[notice.fallback_channels.index(target) + 1 :]
    data: dict[str, Any] = notice.model_dump()
    data.update(
        notice_id=failover_notice_id(notice.notice_id, notice.channel, target),
        channel=target,
        to=notice.fallback_to[target],
        fallback_channels=rest,
        fallback_to={c: notice.fallback_to[c] for c in rest if c in notice.fallback_to},
        due_at=now,
    )
    return NoticeDue.model_validate(data)


@dataclass(frozen=True, slots=True)
class Switched:
    row: DeliveryRow
    notice: NoticeDue


class Failover:
    def __init__(
        self, bound: Binding, settings: DispatchSettings, channel: str, routes: Routes, outcomes: Outcomes
    ) -> None:
        self.bound = bound
        self.settings = settings
        self.channel = channel
        self.routes = routes
        self.outcomes = outcomes
        self._on = False

    @property
    def enabled(self) -> bool:
        return self.settings.dispatch_failover_after_s is not None

    def active(self) -> bool:
        """Every route of the channel has been down for at least the configured time (this replica's view)."""
        after = self.settings.dispatch_failover_after_s
        down = self.routes.down_for()
        service = self.bound.service or self.settings.service_name or ""
        CHANNEL_DOWN_SECONDS.labels(service, self.channel).set(down)
        on = after is not None and down > 0 and down >= after
        FAILOVER_ACTIVE.labels(service, self.channel).set(1 if on else 0)
        if on != self._on:
            self._on = on
            extra = {"channel": self.channel, "down_s": round(down, 1)}
            if on:
                log.warning(
                    "channel down: failing over queued notices to their fallback channel", extra=extra
                )
            else:
                log.warning("channel failover ended: the channel sends again", extra=extra)
        return on

    async def run_once(self) -> int:
        """Switch queued notices while failover is active; returns how many were switched."""
        if not self.active():
            return 0
        total = 0
        while True:
            async with self.bound.tx() as tx:
                switched = await self.switch_batch(tx)
            total += len(switched)
            if len(switched) < self.settings.dispatch_failover_batch_size or not self.active():
                break
        if total:
            log.info(
                "queued notices switched to their fallback channel",
                extra={
                    "channel": self.channel,
                    "switched": total,
                    "down_s": round(self.routes.down_for(), 1),
                },
            )
        return total

    async def switch_batch(self, tx: Transaction) -> list[Switched]:
        """One batch of eligible queued rows switched, in `tx` (see the module docstring)."""
        rows = await self._eligible(tx)
        if not rows:
            return []
        # an incident halt freezes a notice where it is: a halted SMS step is not moved to email
        halts = await for_claim(tx.conn)
        now = datetime.now(UTC)
        allowed = tuple(self.settings.dispatch_failover_channels)
        out: list[Switched] = []
        for row in rows:
            target = failover_target(row.notice, allowed)
            if row.erased or row.unreadable or target is None:
                continue
            if halts.matching(row.channel, row.notice.campaign_id) is not None:
                continue
            expires = row.notice.expires_at
            if expires is not None and expires <= now:
                continue
            new = failover_notice(row.notice, target, now)
            res = await tx.conn.execute(
                text(
                    f"UPDATE {self.bound.schema}.deliveries SET state = 'suppressed', last_error = :e,"
                    " updated_at = now() WHERE notice_id = :id AND state = 'queued'"
                ),
                {"e": f"{FAILED_OVER}:{target}:{new.notice_id}", "id": row.notice_id},
            )
            if res.rowcount == 0:
                continue
            self.outcomes.emit(
                tx, row, DeliveryStatus.SUPPRESSED, reason=f"{FAILED_OVER}:{target}: {self.channel} down"
            )
            tx.emit(new, id=new.notice_id)
            FAILOVERS.labels(self.bound.service, self.channel, target).inc()
            out.append(Switched(row, new))
        return out

    async def _eligible(self, tx: Transaction) -> list[DeliveryRow]:
        """Due queued dunning rows with a fallback to an allowed channel, most urgent first, locked; not of an
        account stopped after the notice was planned, nor withdrawn by the segmenter after it was queued, nor
        opted out of this channel."""
        s = self.bound.schema
        found = (
            await tx.conn.execute(
                text(
                    f"SELECT {COLUMNS} FROM {s}.deliveries d WHERE d.state = 'queued'"
                    " AND d.next_attempt_at <= now() AND d.channel = :c"
                    " AND coalesce(d.payload->>'purpose', 'dunning') = 'dunning'"
                    " AND d.payload->'fallback_channels' ?| CAST(:allowed AS text[])"
                    " AND d.payload->'fallback_to' ?| CAST(:allowed AS text[])"
                    f" AND NOT EXISTS (SELECT 1 FROM {s}.opt_outs o WHERE o.account_id = d.account_id"
                    " AND o.channel = d.channel)"
                    f" AND NOT EXISTS (SELECT 1 FROM {s}.account_stops st WHERE st.account_id = d.account_id"
                    " AND (d.payload->>'account_as_of' IS NULL"
                    " OR CAST(d.payload->>'account_as_of' AS timestamptz) < st.stopped_as_of))"
                    f" AND NOT EXISTS (SELECT 1 FROM {s}.withdrawals w WHERE w.account_id = d.account_id"
                    f" AND {WITHDRAWN_SQL})"
                    " ORDER BY d.priority DESC, d.next_attempt_at LIMIT :n FOR UPDATE OF d SKIP LOCKED"
                ),
                {
                    "c": self.channel,
                    "allowed": list(self.settings.dispatch_failover_channels),
                    "n": self.settings.dispatch_failover_batch_size,
                },
            )
        ).all()
        if not found:
            return []
        keys = await vault().for_reading(tx.conn, {r.account_id for r in found})
        return [to_row(r, keys) for r in found]
