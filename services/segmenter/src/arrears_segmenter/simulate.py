"""Dry run: the real timer code over current data with a virtual clock, inside one transaction that is
rolled back. Nothing is written, nothing reaches the outbox, nothing is sent.

The virtual clock jumps from one due timer to the next (never backwards), so 30 days take as many ticks as
there are distinct due moments. The simulation holds row locks until it ends; a live segmenter's tick skips
those rows meanwhile (SKIP LOCKED) and fires them afterwards, so nothing is lost or delayed for long.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from arrears_shared.stream.transaction import Transaction
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from .accounts.models import decisions
from .deps import Deps
from .policy.service import load_new_version
from .timers.models import timers
from .timers.service import fire_due


@dataclass
class Simulation:
    start: datetime
    end: datetime
    notices: list[dict[str, Any]] = field(default_factory=list)
    gate: list[dict[str, Any]] = field(default_factory=list)  # deferred / suppressed / held decisions
    ticks: int = 0

    def by_tier_channel(self) -> Counter[tuple[str, str]]:
        return Counter((n["tier"], n["channel"]) for n in self.notices)

    def by_day(self) -> Counter[str]:
        return Counter(n["due_at"][:10] for n in self.notices)

    def gate_by_rule(self) -> Counter[tuple[str, str]]:
        return Counter((g["outcome"], g["rule_id"]) for g in self.gate)


async def simulate(
    engine: AsyncEngine,
    deps: Deps,
    *,
    days: float,
    start: datetime | None = None,
    policy_text: str | None = None,
    max_ticks: int = 100_000,
) -> Simulation:
    t0 = start or deps.clock.now()
    sim = Simulation(start=t0, end=t0 + timedelta(days=days))
    async with engine.connect() as conn:
        trans = await conn.begin()
        try:
            tx = Transaction(conn, "segmenter", "segmenter-simulation")
            if policy_text is not None:  # try a candidate policy: installed and re-planned, then rolled back
                await load_new_version(conn, policy_text, "simulation", deps, t0)
            marker = (await conn.execute(select(func.coalesce(func.max(decisions.c.id), 0)))).scalar_one()
            now = t0
            while sim.ticks < max_ticks:
                nxt = (
                    await conn.execute(select(func.min(timers.c.due_at)).where(timers.c.state == "pending"))
                ).scalar()
                if nxt is None or nxt > sim.end:
                    break
                now = max(now, nxt)
                await fire_due(conn, tx, deps, now)
                sim.ticks += 1
                for r in tx.records:
                    sim.notices.append(json.loads(r.value))
                tx.records.clear()  # never flushed: the outbox is not touched
            rows = await conn.execute(
                select(decisions)
                .where(decisions.c.id > marker, decisions.c.outcome.in_(("deferred", "suppressed", "held")))
                .order_by(decisions.c.id)
            )
            sim.gate = [
                {
                    "account_id": r.account_id,
                    "step": r.step,
                    "channel": r.channel,
                    "outcome": r.outcome,
                    "rule_id": r.rule_id,
                    "reason": r.reason,
                    "at": r.at.isoformat(),
                    "defer_until": r.defer_until.isoformat() if r.defer_until else None,
                }
                for r in rows
            ]
        finally:
            await trans.rollback()
    return sim


def render(sim: Simulation, details: bool = False) -> str:
    lines = [
        f"Simulation {sim.start:%Y-%m-%d %H:%M}Z -> {sim.end:%Y-%m-%d %H:%M}Z ({sim.ticks} ticks). Nothing was sent.",
        "",
        f"Would send {len(sim.notices)} notices:",
        f"  {'tier':<10} {'channel':<8} {'count':>7}",
    ]
    for (tier, ch), n in sorted(sim.by_tier_channel().items()):
        lines.append(f"  {tier:<10} {ch:<8} {n:>7}")
    lines += ["", "By day (UTC):"]
    for day, n in sorted(sim.by_day().items()):
        lines.append(f"  {day}  {n:>7}")
    lines += ["", f"The gate would defer / suppress / hold ({len(sim.gate)} decisions):"]
    for (outcome, rule), n in sorted(sim.gate_by_rule().items()):
        lines.append(f"  {outcome:<10} {rule:<36} {n:>7}")
    if details:
        lines += ["", "Notices:"]
        for nt in sim.notices:
            lines.append(
                f"  {nt['due_at']}  {nt['account_id']:<20} {nt['tier']:<8} {nt['channel']:<6} "
                f"step {nt['step']}  campaign {nt['campaign_id']}"
            )
        lines += ["", "Gate decisions:"]
        for g in sim.gate:
            until = f" until {g['defer_until']}" if g["defer_until"] else ""
            lines.append(f"  {g['at']}  {g['account_id']:<20} {g['outcome']:<10} {g['rule_id']}{until}")
    return "\n".join(lines)
