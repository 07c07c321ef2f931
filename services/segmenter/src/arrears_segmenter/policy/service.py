"""Load a new policy version and re-plan: future steps only (steps already sent are never re-sent)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import bulk
from ..accounts.handlers import load_locked
from ..accounts.models import decisions
from ..deps import Deps
from ..timers.planning import sync_timers
from . import store
from .models import Policy, parse_policy

REPLAN_CHUNK = 2000


class Loaded(BaseModel):
    policy_id: str
    version: int
    replanned_accounts: int


async def replan_all(conn: AsyncConnection, policy: Policy, now: datetime) -> int:
    ids = await store.accounts_to_replan(conn)
    for i in range(0, len(ids), REPLAN_CHUNK):
        rows = await load_locked(conn, ids[i : i + REPLAN_CHUNK])
        out = await sync_timers(conn, list(rows.values()), policy, now)
        await bulk.insert(conn, decisions, out)
    return len(ids)


async def load_new_version(conn: AsyncConnection, text: str, actor: str, deps: Deps, now: datetime) -> Loaded:
    """Validate (PolicyError with every problem), store as the active version, re-plan every account."""
    policy = parse_policy(text)
    await store.install(conn, policy, text, actor, deps.policy, now)
    n = await replan_all(conn, policy, now)
    return Loaded(policy_id=policy.id, version=policy.version, replanned_accounts=n)
