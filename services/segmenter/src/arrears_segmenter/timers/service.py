"""Fire due timers, a batch at a time, set-based: one indexed due-query (`FOR UPDATE SKIP LOCKED`, so
replicas share the work), one read of the accounts' notice history, then one write per table."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from arrears_shared.stream.transaction import Transaction
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import bulk
from ..accounts.models import accounts, decisions
from ..accounts.projection import Row
from ..campaigns.models import CampaignStatus
from ..campaigns.service import list_campaigns
from ..deps import Deps
from ..policy import store
from ..policy.models import Policy
from .firing import Fired, Sent, fire, notice_id
from .models import notices, timers
from .planning import sync_timers

log = logging.getLogger(__name__)

__all__ = ["fire_due", "notice_id"]

ACCOUNT_COLUMNS = [str(c.name) for c in accounts.columns]
TIMER_COLUMNS = 8  # the due-query selects 8 timer columns, then every account column in table order


async def _load_sent(conn: AsyncConnection, ids: list[str]) -> dict[str, Sent]:
    out: dict[str, Sent] = {a: Sent() for a in ids}
    rows = await conn.execute(
        select(
            notices.c.account_id, notices.c.step, notices.c.cycle, notices.c.channel, notices.c.emitted_at
        ).where(bulk.in_ids(notices.c.account_id, ids))
    )
    for r in rows:
        s = out[r.account_id]
        s.channels_by_step.setdefault((r.cycle, r.step), set()).add(r.channel)
        s.times.setdefault(r.channel, []).append(r.emitted_at)
    return out


async def _policy_for(
    conn: AsyncConnection, t: Any, current: Policy, cache: dict[tuple[str, int], Policy]
) -> Policy:
    if t.policy_id is None or (t.policy_id, t.policy_version) == (current.id, current.version):
        return current
    key = (t.policy_id, t.policy_version)
    if key not in cache:
        cache[key] = await store.version(conn, *key) or current
    return cache[key]


async def fire_due(conn: AsyncConnection, tx: Transaction, deps: Deps, now: datetime) -> int:
    """Handle up to `deps.timer_batch` due timers in the caller's transaction. Returns timers handled."""
    policy = await store.active(conn, deps.policy)
    # The indexed due-query (partial index timers_due on due_at WHERE state = 'pending') picks and locks
    # the batch; only then are those timers joined to their accounts (whose rows are locked too, skipping
    # any an event handler holds right now: that timer simply fires on the next tick).
    picked = (
        select(timers.c.id)
        .where(timers.c.state == "pending", timers.c.due_at <= now)
        .order_by(timers.c.due_at)
        .limit(deps.timer_batch)
        .with_for_update(skip_locked=True)
        .cte("picked")
    )
    due = (
        await conn.execute(
            select(
                timers.c.id,
                timers.c.step,
                timers.c.cycle,
                timers.c.attempts,
                timers.c.due_at,
                timers.c.policy_id,
                timers.c.policy_version,
                timers.c.approved_by,
                *[c.label(f"a_{c.name}") for c in accounts.columns],
            )
            .select_from(picked)
            .join(timers, timers.c.id == picked.c.id)
            .join(accounts, accounts.c.account_id == timers.c.account_id)
            .order_by(timers.c.due_at)
            .with_for_update(of=accounts, skip_locked=True)
        )
    ).all()
    if not due:
        return 0
    ctx = deps.fold_context(now)
    active = await list_campaigns(conn, CampaignStatus.ACTIVE)
    ids = sorted({t.a_account_id for t in due})
    sent = await _load_sent(conn, ids)
    cache: dict[tuple[str, int], Policy] = {}
    accts: dict[str, Row] = {}
    results: list[Fired] = []
    for t in due:
        acct = accts.get(t.a_account_id)
        if acct is None:
            acct = accts[t.a_account_id] = dict(zip(ACCOUNT_COLUMNS, t[TIMER_COLUMNS:], strict=True))
        p = await _policy_for(conn, t, policy, cache)
        results.append(fire(acct, t, p, sent[acct["account_id"]], active, deps.rules, ctx))
    by_id = {t.id: t for t in due}
    timer_rows = []
    for r in results:
        t = by_id[r.timer["id"]]
        timer_rows.append(
            {
                "id": t.id,
                "state": r.timer.get("state", "pending"),
                "due_at": r.timer.get("due_at", t.due_at),
                "attempts": r.timer.get("attempts", t.attempts),
                "reason": r.timer.get("reason"),
                "updated_at": now,
            }
        )
    await bulk.update(conn, timers, ["id"], timer_rows)
    notice_rows = [n for r in results for n in r.notices]
    inserted = {
        x[0]
        for x in await bulk.insert(
            conn, notices, [row for row, _ in notice_rows], conflict=["notice_id"], returning="notice_id"
        )
    }
    for row, ev in notice_rows:
        if row["notice_id"] in inserted:  # a notice id already in the ledger is never emitted again
            tx.emit(ev, id=row["notice_id"], time=now)
    done = [accts[by_id[r.timer["id"]].a_account_id] for r in results if r.step_done]
    touched = list({a["account_id"]: a for a in accts.values()}.values())
    await bulk.update(
        conn,
        accounts,
        ["account_id"],
        [
            {
                k: a[k]
                for k in (
                    "account_id",
                    "last_step",
                    "last_step_at",
                    "hold",
                    "status",
                    "paused_until",
                    "broken_promises",
                    "days_past_due",
                    "aging_bucket",
                    "balance_band",
                    "history",
                    "risk_score",
                    "segment",
                    "paused_by",
                    "pause_until",
                    "pause_reason",
                    "send_now",
                )
            }
            for a in touched
        ],
    )
    decision_rows = [
        d for r in results for d in r.decisions if not (d["notice_id"] and d["notice_id"] not in inserted)
    ]
    decision_rows += await sync_timers(conn, done, policy, now)
    await bulk.insert(conn, decisions, decision_rows)
    return len(due)
