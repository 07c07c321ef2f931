"""The unusual-access alert: one principal reading far more accounts than it usually does.

An account read is a request to a route that needs `accounts.read` (the permission that discloses an
account's details, timeline and personal data) with an `{account_id}` in its path, answered 2xx or 404 (a
probe for an id counts too), in any service — the gate sees them all (gate.py), so no view has to remember.
Reads are counted per principal (`subject`: the key id, or the identity provider's `sub`; a console session
counts as the key or person that opened it) as *distinct accounts* in a sliding window
(`ARREARS_AUTH_UNUSUAL_ACCESS_WINDOW_S`, 10 min). The alert fires when that count exceeds
`max(floor, factor x baseline)`, the baseline being the principal's average accounts per window over its
active windows of the trailing `..._BASELINE_DAYS` (so a newcomer is judged by the floor alone).

Cheap on the hot path: a read is a dictionary update in memory. Every `ARREARS_AUTH_ACCESS_FLUSH_S` (on the
next request after it) each replica adds its new distinct reads per principal and minute to
`iam.access_counts` in one statement, refreshes the baselines of the principals it saw, and checks the
cluster-wide sum of the window, so a reader spread over replicas and services is caught within one flush.
A replica alone raises at once from its own count. Across replicas an account read through two of them is
counted twice in the sum (an over-count, never an under-count).

Raised means: one `iam.security_events` row (`unusual_access`, deduplicated per principal and window, so
replicas do not raise it twice), `arrears_unusual_access_total{principal_role}` (the role, never a name) and a
warning log line naming the principal and the count (never account ids). The console's incident page lists
the events for admins; `ArrearsUnusualAccess` alerts on the counter.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .lockout import security_event
from .principal import Principal
from .roles import ROLES

SCHEMA = "iam"
log = logging.getLogger(__name__)
KIND = "unusual_access"
MAX_TRACKED = 20_000  # distinct accounts kept per principal (far above any threshold that matters)

UNUSUAL = Counter(
    "arrears_unusual_access_total",
    "Unusual-access alerts raised: a principal read far more accounts than usual, by its role",
    ["principal_role"],
)
for _role in ROLES:  # exported from the start, so `increase()` sees the first alert of each role
    UNUSUAL.labels(_role)


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    window_s: float = 600.0
    floor: int = 50
    factor: float = 5.0
    baseline_days: float = 7.0
    flush_s: float = 30.0

    @classmethod
    def from_settings(cls, s: Any) -> AccessPolicy:
        return cls(
            window_s=s.auth_unusual_access_window_s,
            floor=s.auth_unusual_access_floor,
            factor=s.auth_unusual_access_factor,
            baseline_days=s.auth_unusual_access_baseline_days,
            flush_s=s.auth_access_flush_s,
        )

    def threshold(self, baseline: float | None) -> float:
        return max(float(self.floor), self.factor * (baseline or 0.0))


def _minute(ts: float) -> datetime:
    return datetime.fromtimestamp(ts - ts % 60, UTC)


@dataclass
class AccessWatch:
    """One per service process (the gate's)."""

    policy: AccessPolicy = field(default_factory=AccessPolicy)
    service: str = ""
    engine: AsyncEngine | None = None
    _recent: dict[str, OrderedDict[str, float]] = field(default_factory=dict, init=False)
    _roles: dict[str, str] = field(default_factory=dict, init=False)
    _names: dict[str, str] = field(default_factory=dict, init=False)
    _minutes: dict[tuple[str, datetime], tuple[set[str], int]] = field(default_factory=dict, init=False)
    _baseline: dict[str, float] = field(default_factory=dict, init=False)
    _raised: dict[str, float] = field(default_factory=dict, init=False)
    _last_flush: float = field(default_factory=time.monotonic, init=False)
    _task: asyncio.Task[None] | None = field(default=None, init=False)
    _last_cleanup: float = field(default=0.0, init=False)

    # -- the hot path ----------------------------------------------------------------------------------
    def note(self, principal: Principal, account_id: str, now: float | None = None) -> bool:
        """Count one read of `account_id` by `principal`; True when it raised the alert (this replica)."""
        now = time.time() if now is None else now
        who = principal.subject
        self._roles[who] = principal.role
        self._names[who] = principal.name
        seen = self._recent.setdefault(who, OrderedDict())
        seen[account_id] = now
        seen.move_to_end(account_id)
        cut = now - self.policy.window_s
        while seen and (next(iter(seen.values())) <= cut or len(seen) > MAX_TRACKED):
            seen.popitem(last=False)
        accounts, flushed = self._minutes.get((who, _minute(now)), (set(), 0))
        accounts.add(account_id)
        self._minutes[(who, _minute(now))] = (accounts, flushed)
        count = len(seen)
        if count > self.policy.threshold(self._baseline.get(who)) and self._may_raise(who, now):
            self._spawn(self._confirm(who, principal.role, count, now))
            return True
        return False

    async def _confirm(self, who: str, role: str, count: int, now: float) -> None:
        """Raise once the principal's baseline is known (read now if this replica has not yet), and only if
        the count is still above the threshold it gives."""
        try:
            if who not in self._baseline:
                assert self.engine is not None
                async with self.engine.connect() as conn:
                    await self._load_baselines(conn, [who])
                self._baseline.setdefault(who, 0.0)
            if count > self.policy.threshold(self._baseline.get(who)):
                await self.raise_alert(who, role, count, "replica", now)
            else:
                self._raised.pop(who, None)  # within its usual: look again on its next reads
        except Exception as e:  # the database may be down: the next flush checks the cluster-wide count
            self._raised.pop(who, None)
            log.warning("unusual-access check failed", extra={"error": type(e).__name__})

    def _may_raise(self, who: str, now: float) -> bool:
        last = self._raised.get(who)
        if last is not None and now - last < self.policy.window_s:
            return False
        self._raised[who] = now
        return True

    def tick(self) -> None:
        """Called by the gate on every authenticated request: flush when due (in the background)."""
        if self.engine is None or time.monotonic() - self._last_flush < self.policy.flush_s:
            return
        if self._task is None or self._task.done():
            self._last_flush = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(self._flush_logged())

    def _spawn(self, coro: Any) -> None:
        if self.engine is None:
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        _background.add(task)
        task.add_done_callback(_background.discard)

    # -- the periodic flush ----------------------------------------------------------------------------
    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception as e:  # the database may be down: the counts stay and go with the next flush
            log.warning("account-read counts not flushed", extra={"error": type(e).__name__})

    async def flush(self, now: float | None = None) -> None:
        """Write the new distinct reads, refresh baselines, check the cluster-wide windows."""
        now = time.time() if now is None else now
        assert self.engine is not None
        rows: list[dict[str, Any]] = []
        marks: dict[tuple[str, Any], int] = {}  # the new "flushed" marks, applied once the counts commit
        for (who, minute), (accounts, flushed) in list(self._minutes.items()):
            if len(accounts) > flushed:
                rows.append(
                    {"p": who, "b": minute, "r": self._roles.get(who, ""), "n": len(accounts) - flushed}
                )
                marks[(who, minute)] = len(accounts)
        active = sorted({r["p"] for r in rows})
        over = await self._write_and_check(rows, active, now)
        # committed: advance the marks and drop the past minutes (a failed flush leaves both for the next one)
        for k, mark in marks.items():
            if k in self._minutes:
                accounts, flushed = self._minutes[k]
                self._minutes[k] = (accounts, max(flushed, mark))
        for who, minute in [k for k in self._minutes if k[1] < _minute(now)]:
            if self._minutes[(who, minute)][1] >= len(self._minutes[(who, minute)][0]):
                del self._minutes[(who, minute)]
        for who, role, n in over:
            if self._may_raise(who, now):
                await self.raise_alert(who, role, n, "cluster", now)

    async def _write_and_check(
        self, rows: list[dict[str, Any]], active: list[str], now: float
    ) -> list[tuple[str, str, int]]:
        """One transaction: add the new distinct reads, then each active principal's cluster-wide window sum
        against its threshold. Returns the principals over it."""
        assert self.engine is not None
        over: list[tuple[str, str, int]] = []
        async with self.engine.begin() as conn:
            for r in rows:  # a handful of principals per flush
                await conn.execute(
                    text(
                        f"""INSERT INTO {SCHEMA}.access_counts (principal, bucket, role, accounts)
                        VALUES (:p, :b, :r, :n) ON CONFLICT (principal, bucket)
                        DO UPDATE SET accounts = access_counts.accounts + EXCLUDED.accounts, role = EXCLUDED.role"""
                    ),
                    r,
                )
            if not active:
                return over
            w = self.policy.window_s
            await self._load_baselines(conn, active)
            sums = await conn.execute(
                text(
                    f"""SELECT principal, max(role) AS role, sum(accounts) AS n FROM {SCHEMA}.access_counts
                    WHERE principal = ANY(:p) AND bucket > CAST(:now AS timestamptz) - make_interval(secs => :w)
                    GROUP BY principal"""
                ),
                {"p": active, "w": w, "now": datetime.fromtimestamp(now, UTC)},
            )
            over = [
                (s.principal, s.role, int(s.n))
                for s in sums
                if s.n > self.policy.threshold(self._baseline.get(s.principal))
            ]
            if time.monotonic() - self._last_cleanup > 3600:
                self._last_cleanup = time.monotonic()
                await conn.execute(
                    text(
                        f"DELETE FROM {SCHEMA}.access_counts WHERE bucket < now() - make_interval(secs => :s)"
                    ),
                    {"s": (self.policy.baseline_days + 1) * 86400},
                )
        return over

    async def _load_baselines(self, conn: Any, principals: list[str]) -> None:
        """Each principal's usual accounts per window: the average over its active windows of the trailing
        baseline days, the current window excluded (0 for a principal with no history)."""
        for p in principals:
            self._baseline[p] = 0.0
        for b in await conn.execute(
            text(
                f"""SELECT principal, sum(accounts)::float8 / count(DISTINCT date_bin(
                        make_interval(secs => :w), bucket, TIMESTAMPTZ '2000-01-01')) AS per_window
                FROM {SCHEMA}.access_counts WHERE principal = ANY(:p)
                  AND bucket > now() - make_interval(secs => :days * 86400)
                  AND bucket <= now() - make_interval(secs => :w)
                GROUP BY principal"""
            ),
            {"p": principals, "w": self.policy.window_s, "days": self.policy.baseline_days},
        ):
            self._baseline[b.principal] = float(b.per_window)

    async def raise_alert(self, who: str, role: str, count: int, seen_by: str, now: float) -> bool:
        """Record the alert once per principal and window (all replicas share the dedupe key)."""
        assert self.engine is not None
        baseline = self._baseline.get(who)
        threshold = self.policy.threshold(baseline)
        window = int(now // self.policy.window_s)
        async with self.engine.begin() as conn:
            name = self._names.get(who) or await conn.scalar(
                text(f"SELECT split_part(name, '~', 1) FROM {SCHEMA}.api_keys WHERE key_id = :id"),
                {"id": who},
            )
            fresh = await security_event(
                conn,
                KIND,
                who,
                role=role,
                service=self.service,
                detail={
                    "name": name,
                    "accounts": count,
                    "window_s": self.policy.window_s,
                    "threshold": threshold,
                    "baseline": baseline,
                    "seen_by": seen_by,
                },
                dedupe=f"{KIND}:{who}:{window}",
            )
        if fresh:
            UNUSUAL.labels(role or "none").inc()
            log.warning(
                "unusual access: a principal read far more accounts than usual",
                extra={
                    "principal": who,
                    "principal_name": name,
                    "principal_role": role,
                    "accounts": count,
                    "threshold": threshold,
                    "window_s": self.policy.window_s,
                },
            )
        return fresh

    def recent_count(self, who: str, now: float | None = None) -> int:
        now = time.time() if now is None else now
        seen = self._recent.get(who, OrderedDict())
        return sum(1 for t in seen.values() if t > now - self.policy.window_s)


_background: set[asyncio.Task[Any]] = set()
