"""The approval gate: steps of high-balance or complex accounts wait (timer state `held`) for a person."""

from __future__ import annotations

from datetime import datetime

from arrears_shared import paging
from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..accounts.models import accounts
from ..accounts.projection import decision
from ..accounts.store import insert_decisions, load_locked, save
from ..deps import Deps
from ..schedule import store
from ..timers.models import timers
from ..timers.planning import sync_timers


class HeldStep(BaseModel):
    account_id: str
    step: int
    cycle: int
    rule_id: str
    balance_minor: int
    currency: str
    complex: bool
    segment: str
    due_at: datetime
    held_since: datetime


PG_INT_MAX = 2**31 - 1  # step and cycle are PostgreSQL `integer` columns


class Verdict(BaseModel):
    step: int = Field(ge=1, le=PG_INT_MAX, strict=True)  # strict: `true` is not step 1
    cycle: int = Field(ge=0, le=PG_INT_MAX, strict=True)
    note: str = ""


async def held(conn: AsyncConnection) -> list[HeldStep]:
    """Every held step (all pages), longest waiting first."""
    out: list[HeldStep] = []
    cursor: str | None = None
    while True:
        found, cursor = await page_held(conn, 500, cursor)
        out += found
        if cursor is None:
            return out


async def page_held(
    conn: AsyncConnection, limit: int = 200, cursor: str | None = None
) -> tuple[list[HeldStep], str | None]:
    """One page of held steps, longest waiting first, and the cursor of the next page."""
    q = paging.keyset(
        select(
            timers.c.id,
            timers.c.account_id,
            timers.c.step,
            timers.c.cycle,
            timers.c.reason,
            timers.c.due_at,
            timers.c.updated_at,
            accounts.c.balance_minor,
            accounts.c.currency,
            accounts.c.complex,
            accounts.c.segment,
        )
        .join(accounts, accounts.c.account_id == timers.c.account_id)
        .where(timers.c.state == "held"),
        (timers.c.updated_at, timers.c.id),
        cursor,
        limit,
        (False, False),
    )
    rows, after = paging.page((await conn.execute(q)).all(), limit, lambda r: (r.updated_at, r.id))
    return [
        HeldStep(
            account_id=r.account_id,
            step=r.step,
            cycle=r.cycle,
            rule_id=r.reason or "approval",
            balance_minor=r.balance_minor,
            currency=r.currency,
            complex=r.complex,
            segment=r.segment,
            due_at=r.due_at,
            held_since=r.updated_at,
        )
        for r in rows
    ], after


async def decide(
    conn: AsyncConnection, account_id: str, v: Verdict, approve: bool, deps: Deps, now: datetime, actor: str
) -> bool:
    """Approve (the step goes through the compliance gate at the next tick) or reject (the step is skipped
    and the next one planned). `actor` is the authenticated principal (or the override event's actor).
    False if no such held step."""
    acct = (await load_locked(conn, [account_id])).get(account_id)
    key = (timers.c.account_id == account_id, timers.c.step == v.step, timers.c.cycle == v.cycle)
    if acct is None:
        return False
    ctx = deps.fold_context(now)
    note = actor + (f": {v.note}" if v.note else "")
    if approve:
        res = await conn.execute(
            update(timers)
            .where(*key, timers.c.state == "held")
            .values(state="pending", approved_by=actor, approved_at=now, due_at=now, updated_at=now)
            .returning(timers.c.id)
        )
        if res.first() is None:
            return False
        granted = decision(account_id, ctx, "approved", "approval.granted", note, step=v.step, cycle=v.cycle)
        await insert_decisions(conn, [granted])
        return True
    res = await conn.execute(
        update(timers)
        .where(*key, timers.c.state == "held")
        .values(
            state="suppressed",
            reason="approval.rejected",
            approved_by=actor,
            approved_at=now,
            updated_at=now,
        )
        .returning(timers.c.id)
    )
    if res.first() is None:
        return False
    acct.last_step, acct.last_step_at = v.step, now
    await save(conn, [acct])
    out = [decision(account_id, ctx, "rejected", "approval.rejected", note, step=v.step, cycle=v.cycle)]
    out += await sync_timers(
        conn, [acct], await store.active(conn, deps.policy), now, scoring=deps.score_use, rules=deps.rules
    )
    await insert_decisions(conn, out)
    return True
