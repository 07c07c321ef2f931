"""Consumer side of `account-scored`: keep each account's latest score, then re-plan the accounts whose
score changed, so their next step moves to the model's best hour (scores.choice)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from arrears_shared.events import AccountScored
from sqlalchemy.ext.asyncio import AsyncConnection

from ..accounts.store import insert_decisions, load_locked
from ..deps import Deps
from ..schedule import store
from ..timers.planning import sync_timers
from .service import store_scores


async def apply_scores(
    conn: AsyncConnection, events: Sequence[AccountScored], deps: Deps, now: datetime
) -> None:
    if not events:
        return
    changed = await store_scores(conn, events, now)
    if not changed:
        return
    accts = await load_locked(conn, set(changed))
    known = [a for a in accts.values() if a.known]
    policy = await store.active(conn, deps.policy)
    await insert_decisions(
        conn, await sync_timers(conn, known, policy, now, scoring=deps.score_use, rules=deps.rules)
    )
