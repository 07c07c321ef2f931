"""Each account's pending timer with its step from the policy it was planned with, and its holds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from arrears_shared import paging
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..accounts.models import SCHEMA as S
from ..schedule import store
from ..schedule.models import Policy
from ..scores.choice import ScoreUse, band_for, fresh_score
from ..scores.service import latest_scores
from .models import Hold, NextStep

_KEY = (("account_id", str), ("id", int))


def _hold(r: Any) -> Hold | None:
    """The one hold that matters most for a person reading the list (the order the planner honours)."""
    if r.state == "held":
        return "approval"
    if r.hold == "dispute":
        return "dispute"
    if r.paused_by is not None:
        return "pause"
    if r.hold == "promise":
        return "promise"
    if (r.reason or "").startswith("campaign_pause:"):
        return "campaign_pause"
    return None


async def next_steps(
    conn: AsyncConnection,
    bootstrap: Policy,
    limit: int,
    cursor: str | None,
    account_ids: list[str] | None = None,
    *,
    scoring: ScoreUse | None,
    now: datetime,
) -> tuple[list[NextStep], str | None]:
    """One page of pending (or held) steps by account id, and the next page's cursor. The tier is the one
    the step will be sent as for the account's risk band (`Policy.wording_tier`)."""
    after, params = paging.after_sql(cursor, _KEY, descending=False)
    only = "AND t.account_id = ANY(CAST(:a AS text[]))" if account_ids is not None else ""
    rows = await conn.execute(
        text(
            f"""SELECT * FROM (
                  SELECT t.id, t.account_id, t.step, t.cycle, t.due_at, t.state, t.reason, t.policy_id,
                         t.policy_version, a.hold, a.paused_by, a.manual_pause_until, a.promise_hold_until,
                         a.risk_score, a.risk_override
                  FROM {S}.timers t JOIN {S}.accounts a USING (account_id)
                  WHERE t.state IN ('pending', 'held') {only}) AS n
                WHERE {after} ORDER BY account_id, id LIMIT :n"""
        ),
        {"n": limit + 1, "a": account_ids, **params},
    )
    found, nxt = paging.page(rows.all(), limit, lambda r: (r.account_id, r.id))
    scores = await latest_scores(conn, [r.account_id for r in found]) if scoring is not None else {}
    active = await store.active(conn, bootstrap)
    cache: dict[tuple[str, int], Policy | None] = {(active.id, active.version): active}
    out = []
    for r in found:
        policy: Policy | None = active
        if r.policy_id is not None and r.policy_version is not None:
            k = (r.policy_id, r.policy_version)
            if k not in cache:
                cache[k] = await store.version(conn, *k)
            policy = cache[k] or active
        step = next((s for s in policy.steps if s.step == r.step), None) if policy else None
        if step is None and policy is not None and r.step > len(policy.steps):
            step = policy.steps[-1]  # a repeat of the last step
        hold = _hold(r)
        score = fresh_score(scores.get(r.account_id), now, scoring) if scoring is not None else None
        out.append(
            NextStep(
                account_id=r.account_id,
                step=r.step,
                cycle=r.cycle,
                tier=policy.wording_tier(r.step, band_for(r, score)).value if step and policy else None,
                channels=list(step.channels) if step else [],
                due_at=r.due_at,
                state=r.state,
                reason=r.reason,
                policy_id=r.policy_id,
                policy_version=r.policy_version,
                hold=hold,
                hold_until=r.manual_pause_until if hold == "pause" else None,
                promise_until=r.promise_hold_until if r.hold == "promise" else None,
            )
        )
    return out, nxt
