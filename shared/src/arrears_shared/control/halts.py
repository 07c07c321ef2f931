"""The sending halt: one audited switch that stops sending — everything, one channel, or one campaign.

Halts live in the platform schema `iam` (`sending_halts`), written only by people holding `sending.halt`
(the console's API and page, `arrears sending halt|resume`), each change in the console's audit log in the
same transaction. Every dispatcher reads the active halts inside each claim transaction (`for_claim`, the
`sending_halted` check of delivery/checks.py), so there is no cache to miss a halt.

"Within one hop" is a lock, not a hope: a claim transaction takes the halts' advisory lock *shared* before it
reads them, and setting a halt takes it *exclusively* just before its commit. So a claim either finished
(committed its rows `sending`) before the halt committed, or it reads the halt. Nothing claimed after the
halt's commit is sent; a provider call already claimed before it (at most one batch per worker, due within
the limiter's one-second horizon) cannot be called back. Resuming needs no lock: a claim that misses a
resume by a moment sends on its next poll.

A halted row stays `queued`, untouched (all / channel: nothing else on that dispatcher could go anyway), or,
for a campaign halt, moved back by `recheck_after` so the rest of the queue is not blocked behind it. It goes
after the resume, through every other check again (hours, opt-outs, expiry).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from prometheus_client import Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import channels

SCHEMA = "iam"
LOCK = "arrears-sending-halts"
HaltScope = Literal["all", "channel", "campaign"]
SCOPES: tuple[HaltScope, ...] = ("all", "channel", "campaign")
# a campaign-halted row is looked at again after the halt's age, within these bounds
RECHECK_MIN_S, RECHECK_MAX_S = 5.0, 60.0

HALTED = Gauge("arrears_sending_halted", "Active sending halts, by scope (all, channel, campaign)", ["scope"])
HALTED_SINCE = Gauge(
    "arrears_sending_halted_since_timestamp_seconds",
    "When the oldest active halt of each scope was set (0 = none)",
    ["scope"],
)
for _scope in SCOPES:  # every scope exported from the start (0: no halt), so alerts see a resume as a 0
    HALTED.labels(_scope).set(0)
    HALTED_SINCE.labels(_scope).set(0)


@dataclass(frozen=True, slots=True)
class Halt:
    halt_id: str
    scope: HaltScope
    target: str  # channel name, campaign id, or "" for all
    reason: str
    set_at: datetime
    set_by: str
    cleared_at: datetime | None = None
    cleared_by: str | None = None
    clear_reason: str | None = None

    @property
    def label(self) -> str:
        return "all sending" if self.scope == "all" else f"{self.scope} {self.target}"

    @property
    def verdict_reason(self) -> str:
        """What a held delivery row records as why it waits."""
        return f"halted: {self.label}"

    def summary(self) -> dict[str, Any]:
        return {"scope": self.scope, "target": self.target, "reason": self.reason}


class HaltError(ValueError):
    """A halt that cannot be set: bad scope or target, or the same halt is already active."""


class AlreadyHalted(HaltError):
    def __init__(self, existing: Halt) -> None:
        super().__init__(
            f"{existing.label} is already halted (halt {existing.halt_id}, by {existing.set_by})"
        )
        self.existing = existing


_COLUMNS = "halt_id, scope, target, reason, set_at, set_by, cleared_at, cleared_by, clear_reason"


def _halt(r: Any) -> Halt:
    return Halt(**{k: getattr(r, k) for k in _COLUMNS.split(", ")})


def normalise(scope: str, target: str | None) -> tuple[HaltScope, str]:
    """Checked (scope, target): `all` has no target; a channel must be a registered one."""
    if scope not in SCOPES:
        raise HaltError(f"scope must be one of {', '.join(SCOPES)}")
    target = (target or "").strip()
    if scope == "all":
        if target:
            raise HaltError("a halt of all sending has no target")
        return "all", ""
    if not target or len(target) > 64:
        raise HaltError(f"a {scope} halt needs its {scope} (1-64 characters)")
    if scope == "channel" and target not in channels.names():
        raise HaltError(f"unknown channel {target!r} (channels: {', '.join(channels.names())})")
    return scope, target  # type: ignore[return-value]


async def set_halt(conn: AsyncConnection, scope: str, target: str | None, *, reason: str, by: str) -> Halt:
    """Record a halt in the caller's transaction (audit it there too, then commit at once): the exclusive
    lock taken here is held until that commit, so no claim is between reading halts and committing."""
    scope_, target_ = normalise(scope, target)
    reason = reason.strip()
    if not 3 <= len(reason) <= 500:
        raise HaltError("say why (3-500 characters): the reason is in the audit log and on the ops page")
    row = (
        await conn.execute(
            text(
                f"""INSERT INTO {SCHEMA}.sending_halts (scope, target, reason, set_by)
                VALUES (:s, :t, :r, :by)
                ON CONFLICT (scope, target) WHERE cleared_at IS NULL DO NOTHING
                RETURNING {_COLUMNS}"""
            ),
            {"s": scope_, "t": target_, "r": reason, "by": by},
        )
    ).first()
    if row is None:
        existing = await find_active(conn, scope_, target_)
        assert existing is not None
        raise AlreadyHalted(existing)
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": LOCK})
    return _halt(row)


async def clear_halt(conn: AsyncConnection, halt_id: str, *, reason: str, by: str) -> Halt | None:
    """Resume: the halt's row is kept (cleared by whom, when, why); None when no such active halt."""
    reason = reason.strip()
    if not 3 <= len(reason) <= 500:
        raise HaltError("say why sending may resume (3-500 characters)")
    row = (
        await conn.execute(
            text(
                f"""UPDATE {SCHEMA}.sending_halts SET cleared_at = now(), cleared_by = :by, clear_reason = :r
                WHERE halt_id = :id AND cleared_at IS NULL RETURNING {_COLUMNS}"""
            ),
            {"id": halt_id, "by": by, "r": reason},
        )
    ).first()
    return _halt(row) if row else None


async def find_active(conn: AsyncConnection, scope: str, target: str) -> Halt | None:
    row = (
        await conn.execute(
            text(
                f"SELECT {_COLUMNS} FROM {SCHEMA}.sending_halts"
                " WHERE scope = :s AND target = :t AND cleared_at IS NULL"
            ),
            {"s": scope, "t": target},
        )
    ).first()
    return _halt(row) if row else None


async def active(conn: AsyncConnection) -> list[Halt]:
    rows = await conn.execute(
        text(f"SELECT {_COLUMNS} FROM {SCHEMA}.sending_halts WHERE cleared_at IS NULL ORDER BY set_at")
    )
    halts = [_halt(r) for r in rows]
    publish(halts)
    return halts


async def recent(conn: AsyncConnection, limit: int = 20) -> list[Halt]:
    """The latest halts, cleared ones included, newest first (the ops page's history)."""
    rows = await conn.execute(
        text(f"SELECT {_COLUMNS} FROM {SCHEMA}.sending_halts ORDER BY set_at DESC LIMIT :n"), {"n": limit}
    )
    return [_halt(r) for r in rows]


async def for_claim(conn: AsyncConnection) -> HaltSet:
    """The halts a claim transaction must honour: the shared lock first (its own statement, so that under
    READ COMMITTED the read below takes its snapshot after any halt that held the lock has committed)."""
    await conn.execute(text("SELECT pg_advisory_xact_lock_shared(hashtext(:k))"), {"k": LOCK})
    return HaltSet(await active(conn))


@dataclass(frozen=True, slots=True)
class HaltSet:
    halts: list[Halt]

    def matching(self, channel: str, campaign_id: str | None) -> Halt | None:
        """The halt that stops a notice on `channel` of `campaign_id`, if any (the widest first)."""
        for h in self.halts:
            if h.scope == "all":
                return h
        for h in self.halts:
            if (h.scope == "channel" and h.target == channel) or (
                h.scope == "campaign" and campaign_id is not None and h.target == campaign_id
            ):
                return h
        return None


def recheck_after(halt: Halt, now: datetime) -> datetime:
    """When a campaign-halted row is looked at again: after the halt's age so far, between 5 and 60 s (a
    short halt resumes promptly; a long one costs one row update a minute)."""
    age = (now - halt.set_at).total_seconds()
    return now + timedelta(seconds=min(RECHECK_MAX_S, max(RECHECK_MIN_S, age)))


def publish(halts: list[Halt]) -> None:
    """`arrears_sending_halted{scope}` and the oldest halt's start per scope, from the halts just read."""
    for scope in SCOPES:
        mine = [h for h in halts if h.scope == scope]
        HALTED.labels(scope).set(len(mine))
        HALTED_SINCE.labels(scope).set(min(h.set_at for h in mine).timestamp() if mine else 0)


async def publish_loop(ctx: Any) -> None:
    """Console loop: keep the halt gauges current when no dispatcher is claiming (they publish too)."""
    import logging

    log = logging.getLogger(__name__)
    while True:
        try:
            async with ctx.engine.connect() as conn:
                await active(conn)
        except Exception as e:  # the database may be down; the next round tries again
            log.warning("sending halts could not be read", extra={"error": type(e).__name__})
        if not await ctx.sleep(15.0):
            return
