"""The consumer handler of a dispatcher: `notice-due` -> a queued delivery row; `reply-received` -> opt-outs
and fail-safe contact holds (and their release once a person decided); `message-sent` failed permanently by
another service (a hard bounce found later) -> the address is invalid for later notices; `account-changed`
to a state that ends dunning (paid in full, closed, removed), or the segmenter's `DunningStopped` for a
settlement paid -> an account stop: what is queued for the
account, planned from an older state, is suppressed (`checks.stopped`), and rows waiting for a later moment
(quiet hours, backoff) are brought forward so they settle now. Any `DunningStopped` that covers the
dispatcher's channel (a settlement, a person's do-not-contact, a dispute, a pause) -> a withdrawal: the
account's collection notices the segmenter issued before it (`issued_at`) are suppressed
(`checks.withdrawn`), brought forward likewise.

Replays are no-ops twice over: the inbox drops a repeated ce_id, and a notice id already recorded is ignored
(ON CONFLICT DO NOTHING). The one exception is the replay of a dead-lettered notice: its ce_id is the
`dlq_id` the engine gave the DLQ record, and only that id revives the failed delivery (once: the id is
cleared).

Personal data is sealed as it is written (`sealing`): the address and the personal fields of a notice, the
address of an invalid channel (found by its blind index)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text

from ..cloudevents import Envelope
from ..events import (
    COLLECTION_PURPOSES,
    AccountChanged,
    DeliveryStatus,
    DunningStopped,
    Intent,
    MessageSent,
    NoticeDue,
    ReplyReceived,
)
from ..stream.transaction import Transaction
from ..vault.cipher import seal_fields, seal_value
from ..vault.keys import vault
from .binding import Binding
from .channel import Channel
from .sealing import invalid_address, live_keys
from .settings import DispatchSettings
from .tables import WITHDRAWN_SQL

Params = list[dict[str, Any]]
COLLECTION_SQL = ", ".join(f"'{p}'" for p in sorted(COLLECTION_PURPOSES))


@dataclass(slots=True)
class Incoming:
    """One batch of events sorted into the statements they make."""

    notices: Params = field(default_factory=list)
    revive: Params = field(default_factory=list)
    opt_outs: Params = field(default_factory=list)
    holds: Params = field(default_factory=list)
    released: Params = field(default_factory=list)
    invalid: Params = field(default_factory=list)
    stops: dict[str, dict[str, Any]] = field(default_factory=dict)  # account -> its latest stop in the batch
    # account -> its latest withdrawal in the batch (the segmenter's DunningStopped)
    withdrawals: dict[str, dict[str, Any]] = field(default_factory=dict)


class Intake:
    def __init__(self, bound: Binding, channel: Channel, settings: DispatchSettings) -> None:
        self.bound = bound
        self.channel = channel
        self.settings = settings

    async def handle_batch(self, events: Sequence[Envelope], tx: Transaction) -> None:
        await _write(tx, self.sort(events))

    def sort(self, events: Sequence[Envelope]) -> Incoming:
        into = Incoming()
        ch = self.channel.channel
        for env in events:
            ev = env.data
            if isinstance(ev, NoticeDue) and ev.channel == ch:
                _notice(into, env, ev)
            elif isinstance(ev, ReplyReceived):
                if ev.channel == ch:
                    _reply(into, ev)
            elif isinstance(ev, AccountChanged):
                if ev.stop_reason is not None:
                    _stop(into, ev.account_id, ev.as_of, ev.stop_reason)
            elif isinstance(ev, DunningStopped):
                if not ev.channels or ch in ev.channels:
                    _withdraw(into, ev)
                if ev.reason == "settled":
                    _stop(into, ev.account_id, ev.account_as_of, ev.reason)
            elif (
                isinstance(ev, MessageSent)
                and ev.status is DeliveryStatus.FAILED
                and ev.permanent
                and ev.channel == ch
                and env.source != (self.bound.service or self.settings.service_name)
            ):
                # A later verdict on an address we sent to (a hard bounce found by the responses service):
                # later notices to it fail at once instead of being sent.
                into.invalid.append(
                    {
                        "a": ev.account_id,
                        "c": ev.channel,
                        "t": ev.to,
                        "r": (ev.reason or "permanent delivery failure")[:500],
                        "n": ev.notice_id,
                    }
                )
        return into


def _notice(into: Incoming, env: Envelope, ev: NoticeDue) -> None:
    into.notices.append(
        {
            "notice_id": ev.notice_id,
            "account_id": ev.account_id,
            "channel": ev.channel,
            "to": ev.to,
            "payload": ev.model_dump(mode="json"),  # sealed and serialised by `_write`
            "priority": ev.priority,
            "due": ev.due_at,
        }
    )
    if env.id.startswith("dlq:"):
        into.revive.append({"id": ev.notice_id, "d": env.id})


def _stop(into: Incoming, account_id: str, as_of: datetime, reason: str) -> None:
    """The account's dunning ended at state `as_of` (its source said so, or the segmenter: a settlement
    paid); the latest stop of the batch is kept."""
    seen = into.stops.get(account_id)
    if seen is None or seen["t"] < as_of:
        into.stops[account_id] = {"a": account_id, "t": as_of, "r": reason}


def _withdraw(into: Incoming, ev: DunningStopped) -> None:
    seen = into.withdrawals.get(ev.account_id)
    if seen is None or seen["t"] < ev.stopped_at:
        into.withdrawals[ev.account_id] = {"a": ev.account_id, "t": ev.stopped_at, "r": ev.reason}


def _reply(into: Incoming, ev: ReplyReceived) -> None:
    if ev.reviewed_by is not None:
        # a person decided about the reply: its fail-safe hold ends, for good (a replay of the
        # original reply finds the decided row and holds nothing)
        into.released.append({"a": ev.account_id, "c": ev.channel, "r": ev.reply_id, "by": ev.reviewed_by})
    if ev.intent == Intent.OPT_OUT:
        into.opt_outs.append({"a": ev.account_id, "c": ev.channel, "r": ev.reply_id})
    elif ev.possible_opt_out and ev.reviewed_by is None:
        into.holds.append({"a": ev.account_id, "c": ev.channel, "r": ev.reply_id})


async def _seal(tx: Transaction, into: Incoming) -> None:
    """Seal the batch's personal data in place (one `for_writing` of its accounts): a notice's address and the
    personal fields of its payload; an invalid address, with its blind index (none for an erased account:
    its verdicts are dropped, nothing is sent to it anyway)."""
    if into.notices:
        keys = await vault().for_writing(tx.conn, {p["account_id"] for p in into.notices})
        for p in into.notices:
            a, aead = p["account_id"], keys[p["account_id"]]
            p["to"] = seal_value(aead, a, p["to"])
            p["payload"] = json.dumps(seal_fields(aead, a, p["payload"], NoticeDue.personal))
    if into.invalid:
        live = await live_keys(tx.conn, {p["a"] for p in into.invalid})
        into.invalid = [
            {**p, **invalid_address(live[p["a"]], p["a"], p["c"], p["t"])}
            for p in into.invalid
            if p["a"] in live
        ]


async def _write(tx: Transaction, into: Incoming) -> None:
    s = tx.schema
    await _seal(tx, into)
    if into.notices:
        await _run(
            tx,
            f"INSERT INTO {s}.deliveries (notice_id, account_id, channel, to_address, payload,"
            " priority, next_attempt_at) VALUES (:notice_id, :account_id, :channel, :to,"
            " CAST(:payload AS jsonb), :priority, :due) ON CONFLICT (notice_id) DO NOTHING",
            into.notices,
        )
    if into.notices:  # a stop read first (its lane is not behind this one) covers these notices too
        await _settle_stopped_first(tx, {p["account_id"] for p in into.notices})
    if into.revive:
        # A failed delivery was never accepted by a provider (in-doubt ones were reconciled first), so
        # sending it again cannot duplicate it. Rows that failed in doubt go back to reconciliation.
        await _run(
            tx,
            f"UPDATE {s}.deliveries SET state = CASE WHEN route IS NOT NULL AND last_error"
            " LIKE 'in doubt%' THEN 'sending' ELSE 'queued' END, attempts = 0, dlq_id = NULL,"
            " next_attempt_at = now(), last_error = 'replayed from the DLQ',"
            " updated_at = CASE WHEN last_error LIKE 'in doubt%' THEN updated_at ELSE now() END"
            " WHERE notice_id = :id AND state = 'failed' AND dlq_id = :d",
            into.revive,
        )
    if into.invalid:
        await _run(
            tx,
            f"INSERT INTO {s}.invalid_channels (account_id, channel, address, address_bidx, reason, notice_id)"
            " VALUES (:a, :c, :t, :b, :r, :n) ON CONFLICT DO NOTHING",
            into.invalid,
        )
    if into.opt_outs:
        await _run(
            tx,
            f"INSERT INTO {s}.opt_outs (account_id, channel, source_reply_id, created_at)"
            " VALUES (:a, :c, :r, clock_timestamp()) ON CONFLICT DO NOTHING",
            into.opt_outs,
        )
    if into.holds:
        await _run(
            tx,
            f"INSERT INTO {s}.contact_holds (account_id, channel, source_reply_id, reason)"
            " VALUES (:a, :c, :r, 'possible opt-out awaiting a person') ON CONFLICT DO NOTHING",
            into.holds,
        )
    if into.released:
        await _release(tx, into.released)
    if into.stops:
        await _record_stops(tx, list(into.stops.values()))
    if into.withdrawals:
        await _record_withdrawals(tx, list(into.withdrawals.values()))


# A stopped account's queued notices go to the head of the queue: the next claim settles them as suppressed
# (`checks.stopped`, no send), within a second, instead of when the backlog reaches them.
STOPPED_PRIORITY = 1_000_000


async def _record_stops(tx: Transaction, stops: Params) -> None:
    """Keep each account's latest stop (a replay or an older state never moves it back), and move its queued
    dunning rows planned before the stop to the head of the queue, due now (deferred ones too)."""
    s = tx.schema
    await _run(
        tx,
        f"INSERT INTO {s}.account_stops (account_id, stopped_as_of, reason, recorded_at)"
        " VALUES (:a, :t, :r, clock_timestamp()) ON CONFLICT (account_id) DO UPDATE SET"
        " stopped_as_of = EXCLUDED.stopped_as_of, reason = EXCLUDED.reason, recorded_at = clock_timestamp()"
        f" WHERE {s}.account_stops.stopped_as_of < EXCLUDED.stopped_as_of",
        stops,
    )
    await _settle_stopped_first(tx, {p["a"] for p in stops})


async def _settle_stopped_first(tx: Transaction, accounts: set[str]) -> None:
    """The queued dunning rows of these accounts planned before their stop: to the head of the queue, due now."""
    s = tx.schema
    await _run(
        tx,
        f"UPDATE {s}.deliveries d SET next_attempt_at = least(d.next_attempt_at, now()),"
        f" priority = {STOPPED_PRIORITY} FROM {s}.account_stops st WHERE st.account_id = d.account_id"
        f" AND d.account_id = ANY(:a) AND d.state = 'queued' AND d.priority < {STOPPED_PRIORITY}"
        " AND coalesce(d.payload->>'purpose', 'dunning') = 'dunning' AND (d.payload->>'account_as_of' IS NULL"
        " OR CAST(d.payload->>'account_as_of' AS timestamptz) < st.stopped_as_of)",
        [{"a": sorted(accounts)}],
    )


async def _record_withdrawals(tx: Transaction, withdrawals: Params) -> None:
    """Keep each account's latest withdrawal (a replayed older one never moves it back) and bring what it
    covers — collection notices issued at or before it — to the head of the queue, due now: the next claim
    suppresses them. What the segmenter issued later (the stop lifted) is not touched, in this batch or any."""
    s = tx.schema
    await _run(
        tx,
        f"INSERT INTO {s}.withdrawals (account_id, stopped_at, reason, recorded_at)"
        " VALUES (:a, :t, :r, clock_timestamp()) ON CONFLICT (account_id) DO UPDATE SET"
        " stopped_at = EXCLUDED.stopped_at, reason = EXCLUDED.reason, recorded_at = clock_timestamp()"
        f" WHERE {s}.withdrawals.stopped_at < EXCLUDED.stopped_at",
        withdrawals,
    )
    await _run(
        tx,
        f"UPDATE {s}.deliveries d SET next_attempt_at = least(d.next_attempt_at, now()),"
        f" priority = {STOPPED_PRIORITY} FROM {s}.withdrawals w WHERE w.account_id = d.account_id"
        f" AND d.account_id = ANY(:a) AND d.state = 'queued' AND d.priority < {STOPPED_PRIORITY}"
        f" AND coalesce(d.payload->>'purpose', 'dunning') IN ({COLLECTION_SQL}) AND {WITHDRAWN_SQL}",
        [{"a": sorted(p["a"] for p in withdrawals)}],
    )


async def _release(tx: Transaction, released: Params) -> None:
    s = tx.schema
    await _run(
        tx,
        f"INSERT INTO {s}.contact_holds (account_id, channel, source_reply_id, reason,"
        " released_at, released_by) VALUES (:a, :c, :r, 'decided by a person', now(), :by)"
        " ON CONFLICT (account_id, channel, source_reply_id) DO UPDATE SET"
        f" released_at = coalesce({s}.contact_holds.released_at, now()),"
        f" released_by = coalesce({s}.contact_holds.released_by, EXCLUDED.released_by)",
        released,
    )
    # what waited for the decision is due again now (the opt-out check above still applies)
    await _run(
        tx,
        f"UPDATE {s}.deliveries SET next_attempt_at = now() WHERE account_id = :a"
        " AND state = 'queued' AND last_error LIKE 'held:%'",
        [{"a": r["a"]} for r in released],
    )


async def _run(tx: Transaction, sql: str, params: Params) -> None:
    await tx.conn.execute(text(sql), params)
