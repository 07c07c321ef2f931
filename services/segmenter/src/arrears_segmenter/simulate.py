"""Dry run: the real timer code over current data with a virtual clock, inside one transaction that is
rolled back. Nothing is written, nothing reaches the outbox, nothing is sent.

The virtual clock jumps from one due timer to the next (never backwards), so 30 days take as many ticks as
there are distinct due moments. The simulation holds row locks until it ends; a live segmenter's tick skips
those rows meanwhile (SKIP LOCKED) and fires them afterwards, so nothing is lost or delayed for long.

One code path for every caller: `arrears simulate` (CLI) runs `simulate` and prints `render` / `to_dict`;
`POST /policies/simulate` (API, console) runs `compare` (the candidate and the active policy, each in its own
rolled-back transaction, from the same virtual start) and returns `Comparison.to_dict`.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from arrears_shared.stream.transaction import Transaction
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from .accounts.models import decisions
from .accounts.store import open_reasons
from .deps import Deps
from .schedule import store
from .schedule.models import Policy
from .schedule.service import load_new_version
from .timers.models import timers
from .timers.service import fire_due


@dataclass
class Simulation:
    start: datetime
    end: datetime
    notices: list[dict[str, Any]] = field(default_factory=list)
    gate: list[dict[str, Any]] = field(default_factory=list)  # deferred / suppressed / held decisions
    ticks: int = 0
    policy_id: str = ""
    policy_version: int = 0
    truncated: bool = False  # stopped early (max_ticks or max_seconds): the counts are a lower bound

    def by_tier_channel(self) -> Counter[tuple[str, str]]:
        return Counter((n["tier"], n["channel"]) for n in self.notices)

    def by_day(self) -> Counter[str]:
        return Counter(n["due_at"][:10] for n in self.notices)

    def gate_by_rule(self) -> Counter[tuple[str, str]]:
        return Counter((g["outcome"], g["rule_id"]) for g in self.gate)

    def outcomes_by_tier_channel(self) -> list[dict[str, Any]]:
        """One row per (tier, channel): notices sent, and gate decisions deferred / suppressed / held.

        A gate decision's tier is its step's tier in the simulated policy; a hold is per step (no channel,
        shown as "any"). Deferrals count decisions: a notice deferred twice counts twice."""
        rows: dict[tuple[str, str], Counter[str]] = {}
        for n in self.notices:
            rows.setdefault((n["tier"], n["channel"]), Counter())["sent"] += 1
        for g in self.gate:
            rows.setdefault((g["tier"] or "?", g["channel"] or "any"), Counter())[g["outcome"]] += 1
        order = {"reminder": 0, "firm": 1, "final": 2}
        return [
            {
                "tier": tier,
                "channel": ch,
                "sent": c["sent"],
                "deferred": c["deferred"],
                "suppressed": c["suppressed"],
                "held": c["held"],
            }
            for (tier, ch), c in sorted(rows.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0]))
        ]

    def summary(self) -> dict[str, Any]:
        """Counts only (what the API returns and the console shows)."""
        outcomes = Counter(g["outcome"] for g in self.gate)
        return {
            "policy_id": self.policy_id,
            "policy_version": self.policy_version,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "ticks": self.ticks,
            "truncated": self.truncated,
            "totals": {
                "sent": len(self.notices),
                "deferred": outcomes["deferred"],
                "suppressed": outcomes["suppressed"],
                "held": outcomes["held"],
            },
            "by_tier_channel": self.outcomes_by_tier_channel(),
            "by_day": [{"day": d, "sent": n} for d, n in sorted(self.by_day().items())],
            "gate_by_rule": [
                {"outcome": o, "rule_id": r, "count": n} for (o, r), n in sorted(self.gate_by_rule().items())
            ],
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything (`arrears simulate --json`): every notice and gate decision, and the summary."""
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "notices": self.notices,
            "gate": self.gate,
            "summary": self.summary(),
        }


@dataclass
class Comparison:
    """A candidate policy and the active one over the same data, from the same virtual start."""

    days: float
    candidate: Simulation
    active: Simulation

    def to_dict(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "start": self.active.start.isoformat(),
            "end": self.active.end.isoformat(),
            "candidate": self.candidate.summary(),
            "active": self.active.summary(),
        }


async def simulate(
    engine: AsyncEngine,
    deps: Deps,
    *,
    days: float,
    start: datetime | None = None,
    policy_text: str | None = None,
    max_ticks: int = 100_000,
    max_seconds: float | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> Simulation:
    """Run the policy in force (or `policy_text`, validated exactly as `POST /policies` does: PolicyError)
    for `days` of virtual time. Always rolled back; stops early (`truncated`) after `max_ticks` ticks or
    `max_seconds` of wall time, so a caller bounds how long it holds its row locks. `on_progress(fraction)`
    reports the share of the virtual window covered after each tick, and 1.0 when it is done."""
    t0 = start or deps.clock.now()
    sim = Simulation(start=t0, end=t0 + timedelta(days=days))
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    async with engine.connect() as conn:
        trans = await conn.begin()
        try:
            tx = Transaction(conn, "segmenter", "segmenter-simulation")
            if policy_text is not None:  # try a candidate policy: installed and re-planned, then rolled back
                await load_new_version(conn, policy_text, "simulation", deps, t0)
            policy: Policy = await store.active(conn, deps.policy)
            sim.policy_id, sim.policy_version = policy.id, policy.version
            marker = (await conn.execute(select(func.coalesce(func.max(decisions.c.id), 0)))).scalar_one()
            now = t0
            while True:
                nxt = (
                    await conn.execute(select(func.min(timers.c.due_at)).where(timers.c.state == "pending"))
                ).scalar()
                if nxt is None or nxt > sim.end:
                    break
                if sim.ticks >= max_ticks or (deadline is not None and time.monotonic() > deadline):
                    sim.truncated = True
                    break
                now = max(now, nxt)
                await fire_due(conn, tx, deps, now)
                sim.ticks += 1
                for r in tx.records:
                    sim.notices.append(json.loads(r.value))
                tx.records.clear()  # never flushed: the outbox is not touched
                if on_progress is not None and sim.end > t0:
                    on_progress(min(1.0, (now - t0) / (sim.end - t0)))
            if on_progress is not None and not sim.truncated:
                on_progress(1.0)
            rows = (
                await conn.execute(
                    select(decisions)
                    .where(
                        decisions.c.id > marker, decisions.c.outcome.in_(("deferred", "suppressed", "held"))
                    )
                    .order_by(decisions.c.id)
                )
            ).all()
            reasons = await open_reasons(conn, rows)
            sim.gate = [
                {
                    "account_id": r.account_id,
                    "step": r.step,
                    "tier": policy.wording_tier(r.step).value if r.step else None,
                    "channel": r.channel,
                    "outcome": r.outcome,
                    "rule_id": r.rule_id,
                    "reason": reason,
                    "at": r.at.isoformat(),
                    "defer_until": r.defer_until.isoformat() if r.defer_until else None,
                }
                for r, reason in zip(rows, reasons, strict=True)
            ]
        finally:
            await trans.rollback()
    return sim


async def compare(
    engine: AsyncEngine,
    deps: Deps,
    *,
    days: float,
    candidate_text: str,
    start: datetime | None = None,
    max_ticks: int = 100_000,
    max_seconds: float | None = None,
) -> Comparison:
    """The candidate (first: an invalid one raises PolicyError before anything else runs), then the active
    policy, each in its own rolled-back transaction, from the same virtual start."""
    t0 = start or deps.clock.now()
    kw: dict[str, Any] = {"days": days, "start": t0, "max_ticks": max_ticks, "max_seconds": max_seconds}
    candidate = await simulate(engine, deps, policy_text=candidate_text, **kw)
    active = await simulate(engine, deps, **kw)
    return Comparison(days=days, candidate=candidate, active=active)


def render(sim: Simulation, details: bool = False) -> str:
    lines = [
        f"Simulation {sim.start:%Y-%m-%d %H:%M}Z -> {sim.end:%Y-%m-%d %H:%M}Z ({sim.ticks} ticks). Nothing was sent.",
        f"Policy {sim.policy_id} v{sim.policy_version}."
        + (" Stopped early: the counts are a lower bound." if sim.truncated else ""),
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
