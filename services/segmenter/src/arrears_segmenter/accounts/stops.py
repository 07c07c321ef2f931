"""Tell the dispatchers when the segmenter stops an account's dunning for a reason they cannot see.

A dispatcher stops what it holds queued on what `account-changed` says (paid, closed, removed) and on the
customer's own opt-outs. The stops only the segmenter knows — a settlement paid in full (a balance is left),
a person's do-not-contact (all channels or some), a dispute hold, a pause until resumed — would otherwise
leave a notice queued for later (quiet hours, a provider outage, a 429) to go out after them. On the move
into such a stop the segmenter publishes `DunningStopped` on `notice-due`; the dispatchers withdraw what
they queued for the account before it (architecture decision 22).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from arrears_shared.events import DunningStopped
from arrears_shared.stream.transaction import Transaction

from ..schedule.models import Policy
from ..schedule.planner import stop_reason
from .account import Account

# stop_reason rule id -> DunningStopped.reason, for the stops the dispatchers cannot see for themselves
WITHDRAWING = {
    "settled": "settled",
    "do_not_contact": "do_not_contact",
    "dispute_pause": "dispute",
    "manual_pause": "paused",
}


@dataclass(frozen=True, slots=True)
class StopState:
    reason: str | None  # a WITHDRAWING value, or None
    stopped_channels: frozenset[str]


NOT_STOPPED = StopState(None, frozenset())  # an account first seen in this batch


def stop_state(acct: Account, policy: Policy) -> StopState:
    reason = WITHDRAWING.get(stop_reason(acct, policy) or "") if acct.known else None
    return StopState(reason, frozenset(c for c, s in acct.channels.items() if s.stopped))


def new_stops(before: StopState, acct: Account, policy: Policy, now: datetime) -> list[DunningStopped]:
    """What changed from `before` to the account as it is now: a move into a withdrawing stop (every
    channel), else channels a person newly stopped (those channels only)."""
    after = stop_state(acct, policy)
    common = {"account_id": acct.account_id, "account_as_of": acct.as_of or now, "stopped_at": now}
    if after.reason is not None and after.reason != before.reason:
        return [DunningStopped(reason=after.reason, **common)]  # type: ignore[arg-type]
    added = sorted(after.stopped_channels - before.stopped_channels)
    if added and after.reason is None:
        return [DunningStopped(reason="do_not_contact", channels=added, **common)]  # type: ignore[arg-type]
    return []


def publish(tx: Transaction, stops: list[DunningStopped]) -> None:
    for ev in stops:
        scope = ",".join(ev.channels) or "all"
        tx.emit(
            ev,
            id=f"dunning-stopped:{ev.account_id}:{ev.reason}:{scope}:{ev.stopped_at.isoformat()}",
            time=ev.stopped_at,
        )
