"""The pool of sending mailboxes: which mailbox writes to an account, and whether it may write now.

Every account is written from one mailbox for good, so the customer's reply lands in the mailbox that wrote
(`mailbox_assignments`, one row per account: its primary key makes two replicas racing on a new account agree
on one mailbox). The first email to an account picks the mailbox with the smallest share of its daily quota
used over the rolling 24 hours, among those enabled, not paused and with quota left; ties go to the lowest
address. Later emails use that mailbox, whatever the others have left:

- the mailbox is at its daily quota -> the account's mail waits (deferred until a send leaves the window),
  unless `ARREARS_GMAIL_MAILBOX_OVERFLOW` is on and the mailbox has never written to the account (then it
  moves, reason `overflow`);
- the mailbox is paused (Gmail said its sending limit is reached, or refused its credentials) -> waits;
- the mailbox is disabled (draining) or no longer configured -> the account is re-homed to the pick above
  (reason `disabled` / `removed`), recorded in its row with the previous mailbox and the time.

The decision is the last check of the claim (`arrears_shared.delivery.checks`), inside the claim's
transaction and under one advisory lock for the pool, so the counts every replica reads include what the
others committed `sending`: a mailbox's quota is never overrun by replicas together. A mailbox's sends are
counted from `deliveries` itself (`mailbox`, state `sending`/`sent`, in the last 24 hours): nothing to give
back when a claimed row is not sent. Each mailbox is paced by its own row of the shared GCRA limiter.

The mailbox a delivery was claimed for is stored with its rendering (`rendered["mailbox"]`), so a resend
and an in-doubt lookup use that mailbox: a notice in doubt in one mailbox is never sent from another.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from arrears_shared.delivery import DeliveryRow, limiter
from arrears_shared.delivery.binding import Binding
from arrears_shared.delivery.checks import AsyncRowCheck, Scope, Verdict
from arrears_shared.providers.gmail import GmailMailbox
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from . import metrics

log = logging.getLogger(__name__)

SENT_STATES = "('sending', 'sent')"
WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class Choice:
    """The mailbox a claimed row goes from; `new_thread` when that mailbox never wrote to the account (a
    Gmail thread id belongs to one mailbox: another mailbox's is not passed on)."""

    mailbox: GmailMailbox
    new_thread: bool


@dataclass(frozen=True, slots=True)
class MailboxUsage:
    mailbox: GmailMailbox
    sent_24h: int
    paused_until: datetime | None
    pause_reason: str | None

    @property
    def remaining(self) -> int:
        return max(0, self.mailbox.daily_quota - self.sent_24h)


class MailboxPool:
    def __init__(
        self, mailboxes: Sequence[GmailMailbox], *, legacy_sender: str = "", overflow: bool, burst: float
    ) -> None:
        if not any(m.enabled for m in mailboxes):
            raise ValueError("ARREARS_GMAIL_MAILBOXES has no enabled mailbox")
        self.mailboxes = {m.address: m for m in sorted(mailboxes, key=lambda m: m.address)}
        # the mailbox of rows written before the pool (no `mailbox` column, no "mailbox" in the rendering)
        self.legacy = legacy_sender.strip().lower()
        self.overflow = overflow
        self.burst = burst
        self.bound = Binding()  # the engine's, set by build_engine
        self.chosen: dict[str, Choice] = {}  # notice id -> its mailbox, from the check to the render
        self._limiters_ready = False

    @property
    def sending(self) -> list[GmailMailbox]:
        return [m for m in self.mailboxes.values() if m.enabled]

    @property
    def rate_per_s(self) -> float:
        return sum(m.rate_per_s for m in self.sending)

    def mailbox_of(self, rendered: dict[str, Any] | None) -> str:
        """The mailbox a stored rendering was made for (rows rendered before the pool: the old sender)."""
        return str((rendered or {}).get("mailbox") or self.legacy)

    # -- the check ------------------------------------------------------------------------------------
    async def check(self, scope: Scope) -> AsyncRowCheck:
        """Loads the pool's state for the batch (under the pool's lock) and returns the per-row decision."""
        conn, s = scope.tx.conn, scope.schema
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"{s}.mailbox-pool"})
        await self._ensure_limiters(conn, s)
        usage = {u.mailbox.address: u for u in await self.usage(conn, s)}
        used = {a: u.sent_24h for a, u in usage.items()}
        paused = {a: u.paused_until for a, u in usage.items() if u.paused_until is not None}
        assigned = {
            r.account_id: r.mailbox
            for r in await conn.execute(
                text(f"SELECT account_id, mailbox FROM {s}.mailbox_assignments WHERE account_id = ANY(:a)"),
                {"a": scope.accounts},
            )
        }
        written: dict[str, set[str]] = {}
        for r in await conn.execute(
            text(
                f"SELECT DISTINCT account_id, coalesce(mailbox, :legacy) AS m FROM {s}.deliveries"
                f" WHERE account_id = ANY(:a) AND state IN {SENT_STATES}"
            ),
            {"a": scope.accounts, "legacy": self.legacy},
        ):
            written.setdefault(r.account_id, set()).add(r.m)

        async def decide(row: DeliveryRow) -> Verdict | None:
            now = datetime.now(UTC)
            acct = row.account_id
            current = assigned.get(acct)
            move: tuple[str, str] | None = None  # (from, reason): applied only once the row goes
            if current is None:
                # an account written to before the pool existed stays with the mailbox that wrote
                earlier = sorted(m for m in written.get(acct, ()) if self.usable(m))
                current = earlier[0] if earlier else self._pick(used, paused, now)
                if current is None:
                    return await self._all_full(conn, s, used, now)
            elif not self.usable(current):
                pick = self._pick(used, paused, now)
                if pick is None:
                    return await self._all_full(conn, s, used, now)
                move = (current, "removed" if current not in self.mailboxes else "disabled")
                current = pick
            box = self.mailboxes[current]
            until = paused.get(current)
            if until is not None and until > now:
                return Verdict("defer", f"mailbox paused: {usage[current].pause_reason or ''}"[:300], until)
            if used[current] >= box.daily_quota:
                pick = None
                if self.overflow and current not in written.get(acct, ()):
                    pick = self._pick(used, paused, now, exclude=current)
                if pick is None:
                    until = await self.frees_at(conn, s, current, now)
                    return Verdict("defer", "mailbox at its daily quota (rolling 24 h)", until)
                if acct in assigned:
                    move = (move[0] if move else current, move[1] if move else "overflow")
                current, box = pick, self.mailboxes[pick]
            if row.rendered is not None and self.mailbox_of(row.rendered) != current:
                # rendered for a mailbox the account has left and never accepted (the row is queued): again
                await conn.execute(
                    text(
                        f"UPDATE {s}.deliveries SET rendered = NULL WHERE notice_id = :id AND state = 'queued'"
                    ),
                    {"id": row.notice_id},
                )
                return Verdict("defer", f"mailbox now {current}: rendered again", now)
            got = await limiter.acquire(conn, s, box.limiter_name, box.rate_per_s, self.burst)
            if not got.allowed:
                return Verdict("defer", "mailbox paced", now + timedelta(seconds=max(0.05, got.wait_s)))
            if acct not in assigned:
                won = await self._assign(conn, s, acct, current)
                assigned[acct] = won
                if won != current:  # another replica gave the account its mailbox first: that one
                    return Verdict("defer", "mailbox chosen by another replica", now)
            elif move is not None:
                await self._rehome(conn, s, acct, move[0], current, move[1])
                assigned[acct] = current
            used[current] += 1
            await conn.execute(
                text(f"UPDATE {s}.deliveries SET mailbox = :m WHERE notice_id = :id"),
                {"m": current, "id": row.notice_id},
            )
            if row.rendered is None:  # rendered next, without an await in between (see `EmailChannel.render`)
                self.chosen[row.notice_id] = Choice(box, new_thread=current not in written.get(acct, ()))
            return None

        return decide

    def usable(self, address: str) -> bool:
        box = self.mailboxes.get(address)
        return box is not None and box.enabled

    def _pick(
        self, used: dict[str, int], paused: dict[str, datetime], now: datetime, exclude: str | None = None
    ) -> str | None:
        """The enabled mailbox with quota left and not paused whose quota is least used (then by address)."""
        best: tuple[float, str] | None = None
        for box in self.sending:
            a = box.address
            if a == exclude or used[a] >= box.daily_quota or (a in paused and paused[a] > now):
                continue
            key = (used[a] / box.daily_quota, a)
            if best is None or key < best:
                best = key
        return None if best is None else best[1]

    async def _all_full(self, conn: AsyncConnection, s: str, used: dict[str, int], now: datetime) -> Verdict:
        """No mailbox can take a new account now: wait for the first to free a slot."""
        frees = [
            await self.frees_at(conn, s, m.address, now, full=used[m.address] >= m.daily_quota)
            for m in self.sending
        ]
        return Verdict("defer", "every mailbox at its daily quota or paused", min(frees))

    async def _assign(self, conn: AsyncConnection, s: str, account_id: str, mailbox: str) -> str:
        """The account's mailbox: `mailbox`, or the one another replica gave it first (the primary key)."""
        won = (
            await conn.execute(
                text(
                    f"INSERT INTO {s}.mailbox_assignments (account_id, mailbox) VALUES (:a, :m)"
                    " ON CONFLICT (account_id) DO NOTHING RETURNING mailbox"
                ),
                {"a": account_id, "m": mailbox},
            )
        ).scalar_one_or_none()
        if won is not None:
            metrics.ASSIGNED.labels(mailbox).inc()
            return str(won)
        return str(
            (
                await conn.execute(
                    text(f"SELECT mailbox FROM {s}.mailbox_assignments WHERE account_id = :a"),
                    {"a": account_id},
                )
            ).scalar_one()
        )

    async def _rehome(
        self, conn: AsyncConnection, s: str, account_id: str, old: str, new: str, reason: str
    ) -> None:
        await conn.execute(
            text(
                f"UPDATE {s}.mailbox_assignments SET mailbox = :new, previous_mailbox = :old,"
                " rehomed_at = now(), rehome_reason = :r WHERE account_id = :a AND mailbox = :old"
            ),
            {"a": account_id, "old": old, "new": new, "r": reason},
        )
        metrics.REHOMED.labels(old, new, reason).inc()
        log.warning(
            "account re-homed to another sending mailbox",
            extra={"account_id": account_id, "from": old, "to": new, "reason": reason},
        )

    # -- state ----------------------------------------------------------------------------------------
    async def _ensure_limiters(self, conn: AsyncConnection, s: str) -> None:
        """Once per process: every mailbox's limiter row, and mail waiting for the pool is due again now, so
        a configuration change (a mailbox added, a quota raised, a mailbox enabled) takes effect at once."""
        if not self._limiters_ready:
            for box in self.mailboxes.values():
                await limiter.ensure(conn, s, box.limiter_name)
            # rows another claim holds are skipped, never waited for (it holds them and waits for our lock)
            await conn.execute(
                text(
                    f"UPDATE {s}.deliveries SET next_attempt_at = now() WHERE notice_id IN (SELECT notice_id"
                    f" FROM {s}.deliveries WHERE state = 'queued' AND next_attempt_at > now() AND"
                    " (last_error LIKE 'mailbox %' OR last_error LIKE 'every mailbox %') FOR UPDATE SKIP LOCKED)"
                )
            )
            self._limiters_ready = True

    async def usage(self, conn: AsyncConnection, s: str) -> list[MailboxUsage]:
        """Every configured mailbox: sends over the last 24 hours (all replicas) and its pause, if any."""
        names = [m.limiter_name for m in self.mailboxes.values()]
        counts = {
            r.m: int(r.n)
            for r in await conn.execute(
                text(
                    f"SELECT coalesce(mailbox, :legacy) AS m, count(*) AS n FROM {s}.deliveries"
                    f" WHERE state IN {SENT_STATES} AND updated_at > now() - interval '24 hours'"
                    " AND (mailbox = ANY(:boxes) OR (mailbox IS NULL AND :legacy = ANY(:boxes)))"
                    " GROUP BY 1"
                ),
                {"legacy": self.legacy, "boxes": list(self.mailboxes)},
            )
        }
        pauses = {
            r.name: r
            for r in await conn.execute(
                text(
                    f"SELECT name, until, reason FROM {s}.route_pauses WHERE name = ANY(:n) AND until > now()"
                ),
                {"n": names},
            )
        }
        out = []
        for box in self.mailboxes.values():
            p = pauses.get(box.limiter_name)
            out.append(
                MailboxUsage(box, counts.get(box.address, 0), p.until if p else None, p.reason if p else None)
            )
        metrics.observe(out)
        return out

    async def frees_at(
        self, conn: AsyncConnection, s: str, mailbox: str, now: datetime, *, full: bool = True
    ) -> datetime:
        """When the mailbox can send again: its pause ends and (when `full`) its oldest send of the rolling
        window leaves it."""
        row = (
            await conn.execute(
                text(
                    f"SELECT (SELECT min(updated_at) FROM {s}.deliveries WHERE state IN {SENT_STATES}"
                    " AND updated_at > now() - interval '24 hours'"
                    " AND (mailbox = :m OR (mailbox IS NULL AND :m = :legacy))) AS oldest,"
                    f" (SELECT until FROM {s}.route_pauses WHERE name = :n AND until > now()) AS paused"
                ),
                {"m": mailbox, "legacy": self.legacy, "n": f"gmail:{mailbox}"},
            )
        ).one()
        at = now + timedelta(minutes=1)
        if full and row.oldest is not None:
            at = max(at, row.oldest + WINDOW + timedelta(minutes=1))
        if row.paused is not None:
            at = max(at, row.paused)
        return at  # type: ignore[no-any-return]

    async def pause(self, mailbox: str, until: datetime, reason: str) -> None:
        """This mailbox sends nothing before `until` (every replica); the others go on."""
        async with self.bound.engine.begin() as conn:
            await conn.execute(
                text(
                    f"INSERT INTO {self.bound.schema}.route_pauses (name, until, reason) VALUES (:n, :u, :r)"
                    " ON CONFLICT (name) DO UPDATE SET until = greatest(EXCLUDED.until,"
                    f" {self.bound.schema}.route_pauses.until), reason = EXCLUDED.reason"
                ),
                {"n": f"gmail:{mailbox}", "u": until, "r": reason[:300]},
            )
        log.warning("sending mailbox paused", extra={"mailbox": mailbox, "until": until.isoformat()})

    async def slow_down(self, mailbox: str, until: datetime) -> None:
        """Gmail throttled this mailbox (per-user rate): its own limiter waits until then."""
        box = self.mailboxes.get(mailbox)
        if box is None:
            return
        async with self.bound.engine.begin() as conn:
            await limiter.pause(conn, self.bound.schema, box.limiter_name, until, box.rate_per_s, self.burst)
