"""Load a new policy version and re-plan: future steps only (steps already sent are never re-sent)."""

from __future__ import annotations

from datetime import datetime

from arrears_shared.compliance import RuleSet
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from ..accounts.store import insert_decisions, load_locked
from ..deps import Deps
from ..scores.choice import ScoreUse
from ..timers.planning import sync_timers
from . import store
from .models import Policy, PolicyError, check_currencies, parse_policy

REPLAN_CHUNK = 2000


class Loaded(BaseModel):
    policy_id: str
    version: int
    replanned_accounts: int


async def replan_all(
    conn: AsyncConnection,
    policy: Policy,
    now: datetime,
    scoring: ScoreUse | None = None,
    rules: RuleSet | None = None,
) -> int:
    ids = await store.accounts_to_replan(conn)
    for i in range(0, len(ids), REPLAN_CHUNK):
        accts = await load_locked(conn, ids[i : i + REPLAN_CHUNK])
        out = await sync_timers(conn, list(accts.values()), policy, now, scoring=scoring, rules=rules)
        await insert_decisions(conn, out)
    return len(ids)


async def load_new_version(conn: AsyncConnection, text: str, actor: str, deps: Deps, now: datetime) -> Loaded:
    """Validate (PolicyError with every problem), store as the active version, re-plan every account."""
    policy = parse_policy(text)
    problems = check_currencies(policy, deps.rates)
    if problems:
        raise PolicyError(problems)
    await store.install(conn, policy, text, actor, deps.policy, now)
    n = await replan_all(conn, policy, now, deps.score_use, deps.rules)
    return Loaded(policy_id=policy.id, version=policy.version, replanned_accounts=n)


async def adopt_configured(conn: AsyncConnection, deps: Deps, now: datetime) -> Loaded | None:
    """At start-up: if the configured policy file (ARREARS_SEGMENTER_POLICY_PATH or the packaged one) is a
    version newer than every stored version of its id, make it active and re-plan; otherwise keep the
    stored active version (a version loaded through the API is not undone by a restart)."""
    await store.active(conn, deps.policy)
    stored = await store.version(conn, deps.policy.id, deps.policy.version)
    if stored is not None:
        return None
    top = await store.latest_version(conn, deps.policy.id)
    if top is not None and top > deps.policy.version:
        return None
    policy = await store.install(conn, deps.policy, "configured file", "startup", deps.policy, now)
    n = await replan_all(conn, policy, now, deps.score_use, deps.rules)
    return Loaded(policy_id=policy.id, version=policy.version, replanned_accounts=n)
