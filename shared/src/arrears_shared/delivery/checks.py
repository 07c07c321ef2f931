"""The last-moment checks of claimed rows, an ordered chain: the first check that stops a row decides what
happens to it; a row every check passes is rendered and sent.

A check is an async function of the batch's `Scope` that loads what it needs for the whole batch (one query
at most) and returns the per-row check, a plain function (or an async one, when it must await, like the
compliance gate): `None` passes the row on, a `Verdict` stops it. A new check is one entry in
`default_checks`. Answers to the customer's own message (the opt-out confirmation, the HELP text)
are exempt from the opt-out they confirm, from holds and from the compliance gate; dunning notices never are.
Per `purpose` (NoticeDue): collection messages (`dunning`, `payment_retry`) pass every check; confirmations
(`payment_receipt`, `promise_confirmation`, `plan_confirmation`, `dispute_acknowledgement`) respect opt-outs,
holds and contact hours but not the frequency cap, and are not suppressed by a stop or a withdrawal (a
receipt follows the payment in full that stopped dunning); answers (`opt_out_confirmation`, `help`) pass only `erased`/`expired`.
Nothing, of any purpose, is ever sent to an erased account (`erased`, the first check).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import text

from ..control.halts import for_claim, recheck_after
from ..stream.transaction import Transaction
from ..vault.cipher import is_sealed
from .channel import DeliveryRow
from .gate import Gate
from .sealing import address_index

log = logging.getLogger("arrears_shared.delivery.engine")  # the engine's one logger, whichever stage logs

HOLD_RECHECK_S = 300.0  # a held delivery (possible opt-out awaiting a person) is looked at again this often


@dataclass(frozen=True, slots=True)
class Verdict:
    """Why a row is not sent now: `suppress` (settled suppressed), `fail` (settled failed, permanently),
    `defer` (requeued until `until`) or `skip` (left queued, untouched, for a later batch). `after` runs
    once the verdict is recorded."""

    action: Literal["suppress", "fail", "defer", "skip"]
    reason: str = ""
    until: datetime | None = None
    after: Callable[[], None] | None = None


@dataclass(slots=True)
class Scope:
    """What the checks of one batch share: its transaction, the accounts of its rows, the time the rows are
    judged at (set once every check has loaded) and the accounts already taking a send in this batch."""

    tx: Transaction
    schema: str
    channel: str
    accounts: list[str]
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    sending: set[str] = field(default_factory=set)


RowCheck = Callable[[DeliveryRow], Verdict | None]
AsyncRowCheck = Callable[[DeliveryRow], Awaitable[Verdict | None]]
Check = Callable[[Scope], Awaitable[RowCheck | AsyncRowCheck]]

SKIP = Verdict("skip")
OPTED_OUT = Verdict("suppress", "opted_out")
EXPIRED = Verdict("suppress", "expired")
ERASED = Verdict("suppress", "erased")
UNREADABLE = Verdict("fail", "unreadable: personal data does not open with the account's key")


async def _accounts(scope: Scope, table: str, where: str = "") -> set[str]:
    rows = await scope.tx.conn.execute(
        text(
            f"SELECT account_id FROM {scope.schema}.{table} WHERE channel = :c AND account_id = ANY(:a){where}"
        ),
        {"a": scope.accounts, "c": scope.channel},
    )
    return {r.account_id for r in rows}


async def _by_account(scope: Scope, table: str, columns: str) -> dict[str, Any]:
    """The batch's accounts' rows of a table keyed by account (one row per account)."""
    rows = await scope.tx.conn.execute(
        text(f"SELECT account_id, {columns} FROM {scope.schema}.{table} WHERE account_id = ANY(:a)"),
        {"a": scope.accounts},
    )
    return {r.account_id: r for r in rows}


async def erased(scope: Scope) -> RowCheck:
    """The account was erased (its data key destroyed): nothing is ever sent to it, suppressed. A row whose
    sealed data does not open (no key, another key) cannot be sent either: failed permanently."""

    def check(row: DeliveryRow) -> Verdict | None:
        return ERASED if row.erased else UNREADABLE if row.unreadable else None

    return check


async def stopped(scope: Scope) -> RowCheck:
    """The account was stopped at its source (paid in full, closed, removed) after the state this notice was
    planned from: suppressed. A notice from an older producer (no `account_as_of`) counts as planned when
    it was queued here."""
    stops = await _by_account(scope, "account_stops", "stopped_as_of, reason, recorded_at")

    def check(row: DeliveryRow) -> Verdict | None:
        stop = stops.get(row.account_id)
        if stop is None or not row.notice.is_collection:  # a receipt after a payment in full still goes
            return None
        planned = row.notice.account_as_of
        if planned is not None and planned < stop.stopped_as_of:
            return Verdict("suppress", f"stopped: {stop.reason}")
        if planned is None and row.created_at <= stop.recorded_at:
            return Verdict("suppress", f"stopped: {stop.reason}")
        return None

    return check


async def withdrawn(scope: Scope) -> RowCheck:
    """The segmenter withdrew the account's notices (`DunningStopped`: a settlement paid, a person's
    do-not-contact, a dispute, a pause) after issuing this one: suppressed. The notice's `issued_at` (the
    segmenter's clock, kept by a failover copy and a DLQ revival) is compared with the stop's; a notice
    without it counts as issued when it was queued here. A notice issued after the stop (lifted) goes."""
    found = await _by_account(scope, "withdrawals", "stopped_at, reason, recorded_at")

    def check(row: DeliveryRow) -> Verdict | None:
        w = found.get(row.account_id)
        if w is None or not row.notice.is_collection:
            return None
        issued = row.notice.issued_at
        covered = issued <= w.stopped_at if issued is not None else row.created_at <= w.recorded_at
        return Verdict("suppress", f"withdrawn: {w.reason}") if covered else None

    return check


async def opted_out(scope: Scope) -> RowCheck:
    """The customer opted out of this channel: suppressed."""
    opted = await _accounts(scope, "opt_outs")

    def check(row: DeliveryRow) -> Verdict | None:
        return OPTED_OUT if row.account_id in opted and not row.notice.is_answer else None

    return check


async def held(scope: Scope) -> RowCheck:
    """Fail-safe: a possible opt-out waits for a person; checked again later, never sent meanwhile."""
    holding = await _accounts(scope, "contact_holds", " AND released_at IS NULL")

    def check(row: DeliveryRow) -> Verdict | None:
        if row.account_id in holding and not row.notice.is_answer:
            until = scope.now + timedelta(seconds=HOLD_RECHECK_S)
            return Verdict("defer", "held: possible opt-out awaiting a person", until)
        return None

    return check


async def invalid_channel(scope: Scope) -> RowCheck:
    """The address was found invalid (a provider rejection, a hard bounce): failed permanently. Addresses are
    sealed: matched by their blind index (`address_bidx`); a row written before sealing (no index, plaintext
    address) by the address itself; a sealed one without an index (its account was erased) never matches."""
    by_index: dict[tuple[str, str], str] = {}
    by_address: dict[tuple[str, str], str] = {}
    for r in await scope.tx.conn.execute(
        text(
            f"SELECT account_id, address, address_bidx, reason FROM {scope.schema}.invalid_channels"
            " WHERE channel = :c AND account_id = ANY(:a)"
        ),
        {"a": scope.accounts, "c": scope.channel},
    ):
        if r.address_bidx is not None:
            by_index[(r.account_id, r.address_bidx)] = r.reason
        elif not is_sealed(r.address):
            by_address[(r.account_id, r.address)] = r.reason
    accounts = {a for a, _ in by_index}

    def check(row: DeliveryRow) -> Verdict | None:
        bad = by_address.get((row.account_id, row.to_address))
        if bad is None and row.account_id in accounts:
            bad = by_index.get((row.account_id, address_index(scope.channel, row.to_address) or ""))
        return None if bad is None else Verdict("fail", f"channel_invalid: {bad}"[:500])

    return check


async def expired(scope: Scope) -> RowCheck:
    """The notice is past its expiry: suppressed."""

    def check(row: DeliveryRow) -> Verdict | None:
        expires_at = row.notice.expires_at
        return EXPIRED if expires_at is not None and expires_at <= scope.now else None

    return check


async def sending_halted(scope: Scope) -> RowCheck:
    """An incident halt (all sending, this channel, or the notice's campaign) stops the row; it stays queued
    and goes after the resume, through every check again. Read in this transaction under the halts' shared
    lock (control/halts.py), so a halt committed before this claim is never missed. Answers to the customer
    (the opt-out confirmation, HELP) are held too: the opt-out itself is in force whatever happens, and an
    answer that outlives its expiry is suppressed by `expired`, never sent late."""
    halts = await for_claim(scope.tx.conn)

    def check(row: DeliveryRow) -> Verdict | None:
        halt = halts.matching(row.channel, row.notice.campaign_id)
        if halt is None:
            return None
        if halt.scope == "campaign":  # the rest of the queue must not wait behind the halted campaign
            return Verdict("defer", halt.verdict_reason, recheck_after(halt, scope.now))
        return SKIP  # all / channel: nothing on this dispatcher may go, the rows stay as they are

    return check


async def one_per_account(scope: Scope) -> RowCheck:
    """At most one send per account in a batch, so the frequency cap of the next one sees this one."""

    def check(row: DeliveryRow) -> Verdict | None:
        return SKIP if row.account_id in scope.sending else None

    return check


def compliance(gate: Gate) -> Check:
    """The compliance gate (contact hours, frequency caps, do-not-contact): suppress or defer."""

    async def compliance_gate(scope: Scope) -> AsyncRowCheck:
        recent: dict[str, list[datetime]] = {}
        for r in await scope.tx.conn.execute(
            text(
                f"SELECT account_id, updated_at AS at FROM {scope.schema}.deliveries WHERE account_id = ANY(:a)"
                " AND channel = :c AND state = 'sent' AND updated_at > now() - interval '31 days'"
            ),
            {"a": scope.accounts, "c": scope.channel},
        ):
            recent.setdefault(r.account_id, []).append(r.at)

        async def check(row: DeliveryRow) -> Verdict | None:
            if row.notice.is_answer:
                return None
            # a confirmation keeps contact hours but is not a collection attempt: no frequency cap
            sends = [] if row.notice.is_confirmation else recent.get(row.account_id, [])
            decision = await gate(row.notice, scope.now, sends)
            if decision.action == "suppress":
                return Verdict("suppress", f"compliance:{decision.rule or 'gate'}")
            if decision.action == "defer":
                until = decision.defer_until or scope.now + timedelta(minutes=15)
                extra = {"notice_id": row.notice_id, "rule": decision.rule, "until": until.isoformat()}
                return Verdict(
                    "defer",
                    f"deferred:{decision.rule or 'gate'}",
                    until,
                    after=lambda: log.info("delivery deferred", extra=extra),
                )
            return None

        return check

    return compliance_gate


def default_checks(gate: Gate) -> list[Check]:
    """The chain, in order: the first check that stops a row decides."""
    return [
        erased,
        stopped,
        withdrawn,
        opted_out,
        held,
        invalid_channel,
        expired,
        sending_halted,
        one_per_account,
        compliance(gate),
    ]
