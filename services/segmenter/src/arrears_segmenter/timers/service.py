"""Fire due timers, a batch at a time, set-based: one indexed due-query (`FOR UPDATE SKIP LOCKED`, so
replicas share the work), one read of the accounts' notice history, then one write per table."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any

from arrears_shared.events import DeliveryStatus, MessageSent
from arrears_shared.stream.transaction import Transaction
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import bulk
from ..accounts.account import Account
from ..accounts.models import accounts
from ..accounts.store import complete, insert_decisions, sealed_send_now
from ..campaigns.models import CampaignStatus
from ..campaigns.service import list_campaigns
from ..deps import Deps
from ..payments import retries as payment_retries
from ..schedule import store
from ..schedule.models import Policy
from ..scores.choice import fresh_score
from ..scores.service import latest_scores
from ..sealing import seal, writing_keys
from .firing import DueTimer, Fired, Sent, fall_back, fire
from .models import notices, timers
from .planning import sync_timers

log = logging.getLogger(__name__)

# the due-query selects these timer columns (DueTimer's fields, in order), then every account column
TIMER_COLUMNS = [timers.c.id, timers.c.step, timers.c.cycle, timers.c.attempts, timers.c.due_at]
TIMER_COLUMNS += [timers.c.policy_id, timers.c.policy_version, timers.c.approved_by]
N_TIMER_COLUMNS = len(TIMER_COLUMNS)

# the account columns firing may change, written back for every account of the batch
FIRED_COLUMNS = (
    "account_id",
    "last_step",
    "last_step_at",
    "hold",
    "status",
    "promise_hold_until",
    "broken_promises",
    "days_past_due",
    "aging_bucket",
    "balance_band",
    "history",
    "risk_score",
    "segment",
    "paused_by",
    "manual_pause_until",
    "pause_reason",
    "send_now",
)
_fired_values = attrgetter(*FIRED_COLUMNS)


def _fired_row(acct: Account, keys: dict[str, AESGCM]) -> dict[str, Any]:
    """The account's fired columns as stored: a pause's reason and a send-now's reason sealed."""
    row = dict(zip(FIRED_COLUMNS, _fired_values(acct), strict=True))
    row["pause_reason"] = seal(keys, acct.account_id, acct.pause_reason)
    row["send_now"] = sealed_send_now(keys, acct.account_id, acct.send_now)
    return row


Due = tuple[DueTimer, Account]  # a due timer and its (locked) account; timers of one account share it


async def fire_due(conn: AsyncConnection, tx: Transaction, deps: Deps, now: datetime) -> int:
    """Handle up to `deps.timer_batch` due timers in the caller's transaction. Returns timers handled."""
    retried = await payment_retries.fire_due(tx, deps, now)  # failed-payment retries (payments/retries.py)
    policy = await store.active(conn, deps.policy)
    due = await _pick_due(conn, deps.timer_batch, now)
    if not due:
        return retried
    results = await _fire_all(conn, due, policy, deps, now)
    await bulk.update(conn, timers, ["id"], [r.timer_row() for r in results])
    inserted = await _record_notices(conn, tx, results, now)
    accts = list({a.account_id: a for _, a in due}.values())
    keys = await writing_keys(conn, [a.account_id for a in accts])
    await bulk.update(conn, accounts, ["account_id"], [_fired_row(a, keys) for a in accts])
    decision_rows = [
        d for r in results for d in r.decisions if not (d["notice_id"] and d["notice_id"] not in inserted)
    ]
    done = [a for (_, a), r in zip(due, results, strict=True) if r.step_done]
    decision_rows += await sync_timers(conn, done, policy, now, scoring=deps.score_use, rules=deps.rules)
    await insert_decisions(conn, decision_rows)
    return len(due) + retried


async def fall_back_failed(
    conn: AsyncConnection,
    tx: Transaction,
    failures: Sequence[MessageSent],
    accts: Mapping[str, Account],
    deps: Deps,
    now: datetime,
) -> list[dict[str, Any]]:
    """Notices of ours that failed permanently: marked failed in the ledger (once: a second report of the
    same failure changes nothing) and their step sent on the next channel (`firing.fall_back`). The
    accounts are the caller's, locked and already folded with the failures. Returns decision rows."""
    ids = [f.notice_id for f in failures if f.status is DeliveryStatus.FAILED and f.permanent]
    if not ids:
        return []
    failed = (
        await conn.execute(
            update(notices)
            .where(bulk.in_ids(notices.c.notice_id, ids), notices.c.failed_at.is_(None))
            .values(failed_at=now)
            .returning(
                notices.c.account_id,
                notices.c.step,
                notices.c.cycle,
                notices.c.policy_id,
                notices.c.policy_version,
                notices.c.campaign_id,
            )
        )
    ).all()
    failed = [r for r in failed if r.account_id in accts]
    if not failed:
        return []
    ctx = deps.fold_context(now)
    policy = await store.active(conn, deps.policy)
    ids = sorted({r.account_id for r in failed})
    sent = await _load_sent(conn, ids)
    scores = await latest_scores(conn, ids)
    cache: dict[tuple[str, int], Policy] = {}
    results: list[Fired] = []
    for r in failed:
        timer = DueTimer(0, r.step, r.cycle, 0, now, r.policy_id, r.policy_version, None)
        p = await _policy_for(conn, timer, policy, cache)
        score = fresh_score(scores.get(r.account_id), now, deps.score_use)
        results.append(
            fall_back(
                accts[r.account_id], timer, p, sent[r.account_id], deps.rules, ctx, r.campaign_id, score
            )
        )
    inserted = await _record_notices(conn, tx, results, now)
    return [
        d for r in results for d in r.decisions if not (d["notice_id"] and d["notice_id"] not in inserted)
    ]


async def _pick_due(conn: AsyncConnection, limit: int, now: datetime) -> list[Due]:
    """Pick and lock a batch of due timers, oldest first, with their accounts.

    The indexed due-query (partial index timers_due on due_at WHERE state = 'pending') picks and locks the
    batch; only then are those timers joined to their accounts (whose rows are locked too, skipping any an
    event handler holds right now: that timer simply fires on the next tick)."""
    picked = (
        select(timers.c.id)
        .where(timers.c.state == "pending", timers.c.due_at <= now)
        .order_by(timers.c.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("picked")
    )
    rows = (
        await conn.execute(
            select(*TIMER_COLUMNS, *[c.label(f"a_{c.name}") for c in accounts.columns])
            .select_from(picked)
            .join(timers, timers.c.id == picked.c.id)
            .join(accounts, accounts.c.account_id == timers.c.account_id)
            .order_by(timers.c.due_at)
            .with_for_update(of=accounts, skip_locked=True)
        )
    ).all()
    accts: dict[str, Account] = {}
    due: list[Due] = []
    for r in rows:
        acct = accts.get(r.a_account_id)
        if acct is None:
            acct = accts[r.a_account_id] = Account(*r[N_TIMER_COLUMNS:])
        due.append((DueTimer(*r[:N_TIMER_COLUMNS]), acct))
    await complete(conn, accts)  # personal fields opened, channels attached: one batch
    return due


async def _fire_all(
    conn: AsyncConnection, due: Sequence[Due], policy: Policy, deps: Deps, now: datetime
) -> list[Fired]:
    """Decide every due timer, in due order, each under the policy version it was planned with."""
    ctx = deps.fold_context(now)
    active = await list_campaigns(conn, CampaignStatus.ACTIVE)
    ids = sorted({a.account_id for _, a in due})
    sent = await _load_sent(conn, ids)
    scores = await latest_scores(conn, ids)
    cache: dict[tuple[str, int], Policy] = {}
    results: list[Fired] = []
    for timer, acct in due:
        p = await _policy_for(conn, timer, policy, cache)
        score = fresh_score(scores.get(acct.account_id), now, deps.score_use)
        results.append(fire(acct, timer, p, sent[acct.account_id], active, deps.rules, ctx, score))
    return results


async def _record_notices(
    conn: AsyncConnection, tx: Transaction, results: Sequence[Fired], now: datetime
) -> set[str]:
    """Write the notices to the ledger and emit those new to it; returns the ids inserted (a notice id
    already in the ledger is never emitted again)."""
    notice_rows = [n for r in results for n in r.notices]
    inserted = {
        x[0]
        for x in await bulk.insert(
            conn, notices, [row for row, _ in notice_rows], conflict=["notice_id"], returning="notice_id"
        )
    }
    for row, ev in notice_rows:
        if row["notice_id"] in inserted:
            tx.emit(ev, id=row["notice_id"], time=now)
    return inserted


async def _load_sent(conn: AsyncConnection, ids: list[str]) -> dict[str, Sent]:
    out: dict[str, Sent] = {a: Sent() for a in ids}
    rows = await conn.execute(
        select(
            notices.c.account_id,
            notices.c.step,
            notices.c.cycle,
            notices.c.channel,
            notices.c.emitted_at,
            notices.c.failed_at,
        ).where(bulk.in_ids(notices.c.account_id, ids))
    )
    for r in rows:
        s = out[r.account_id]
        channels = s.channels_by_step.setdefault((r.cycle, r.step), set())
        if r.failed_at is None:  # a notice that failed permanently leaves its step to the next channel
            channels.add(r.channel)
        s.times.setdefault(r.channel, []).append(r.emitted_at)
    return out


async def _policy_for(
    conn: AsyncConnection, t: DueTimer, current: Policy, cache: dict[tuple[str, int], Policy]
) -> Policy:
    """The policy version the timer was planned with (the current one if it is no longer stored)."""
    if t.policy_id is None or t.policy_version is None:
        return current  # a timer that names no version (armed before versions were recorded)
    key = (t.policy_id, t.policy_version)
    if key == (current.id, current.version):
        return current
    if key not in cache:
        cache[key] = await store.version(conn, *key) or current
    return cache[key]
