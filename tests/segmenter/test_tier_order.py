"""Issue #20 item 5: the tone escalates in order. An account never contacted starts at the first tier
whatever its age (unless the policy says `start_tier: by_age`), and a notice calls itself final only when
people come next (the last step of a policy that escalates after it)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from importlib import resources

import pytest
from arrears_segmenter.schedule.models import load_policy, parse_policy
from arrears_segmenter.schedule.planner import first_step
from arrears_segmenter.schedule.service import load_new_version
from arrears_shared.events import Tier

from .support import account, deps, handle, notices, run_tick, timers

DEFAULT_YAML = (resources.files("arrears_segmenter") / "policies" / "default.yaml").read_text()
DUE = date(2026, 3, 1)
DPD_80_NY = datetime(2026, 5, 20, 16, tzinfo=UTC)  # 12:00 EDT on 20 May: 80 days past due


def policy_doc(version: int, extra: str = "", repeats: bool = False) -> str:
    doc = DEFAULT_YAML.replace("version: 1", f"version: {version}")
    if repeats:
        doc = doc.replace(
            "template_id: final-v1", "template_id: final-v1\n    repeat_every_days: 10\n    max_repeats: 2"
        )
    return doc + extra


def test_default_policy_starts_at_the_first_step_whatever_the_age() -> None:
    p = load_policy()
    assert (p.start_tier, p.after_last_step) == ("first", "escalate")
    assert [first_step(p, dpd) for dpd in (0, 1, 45, 80, 200)] == [None, 1, 1, 1, 1]
    by_age = parse_policy(policy_doc(2, "start_tier: by_age\n"))
    assert [first_step(by_age, dpd) for dpd in (0, 1, 45, 80, 200)] == [None, 1, 2, 3, 3]
    with pytest.raises(ValueError, match="start_tier"):
        parse_policy(policy_doc(2, "start_tier: highest\n"))


def test_only_the_step_before_people_is_worded_final() -> None:
    p = load_policy()
    assert [p.wording_tier(s) for s in (1, 2, 3)] == [Tier.REMINDER, Tier.FIRM, Tier.FINAL]
    # the final step repeats: only its last repeat is followed by people
    rep = parse_policy(policy_doc(2, repeats=True))
    assert [rep.wording_tier(s) for s in (3, 4, 5)] == [Tier.FIRM, Tier.FIRM, Tier.FINAL]
    # a policy that stops after its last step (no escalation): nothing is ever worded final
    stop = parse_policy(policy_doc(2, "after_last_step: stop\n"))
    assert [stop.wording_tier(s) for s in (1, 2, 3)] == [Tier.REMINDER, Tier.FIRM, Tier.FIRM]


def test_new_fields_at_their_defaults_stay_out_of_the_stored_body() -> None:
    """A replica from before the fields (extra="forbid") still reads a policy stored by this version."""
    assert not {"start_tier", "after_last_step"} & set(load_policy().model_dump())
    body = parse_policy(policy_doc(2, "start_tier: by_age\nafter_last_step: stop\n")).model_dump()
    assert (body["start_tier"], body["after_last_step"]) == ("by_age", "stop")


async def test_account_first_seen_at_80_days_gets_reminder_then_firm_then_final_in_order(engine) -> None:
    d = deps(DPD_80_NY)
    await handle(engine, d, account("T-80", due_date=DUE))
    await run_tick(engine, d)
    first = await notices(engine, "T-80")
    assert [(n["step"], n["tier"], n["days_past_due"]) for n in first] == [
        (1, "reminder", 80),
        (1, "reminder", 80),
    ]
    # the next step waits its interval after the reminder (7 days), though its threshold (30) is long met
    pending = [t for t in await timers(engine, "T-80") if t["state"] == "pending"]
    assert [(t["step"], t["due_at"]) for t in pending] == [(2, DPD_80_NY + timedelta(days=7))]
    for _ in range(2):
        d.clock.advance(timedelta(days=7))
        await run_tick(engine, d)
    ns = await notices(engine, "T-80")
    assert [(n["step"], n["tier"], n["channel"]) for n in ns] == [
        (1, "reminder", "sms"),
        (1, "reminder", "email"),
        (2, "firm", "sms"),
        (2, "firm", "email"),
        (3, "final", "sms"),  # the last step: escalation to people comes next
        (3, "final", "email"),
    ]
    assert ns[4]["priority"] > ns[2]["priority"] > ns[0]["priority"]
    d.clock.advance(timedelta(days=30))
    await run_tick(engine, d)
    assert len(await notices(engine, "T-80")) == 6  # sequence complete


async def test_a_repeated_final_step_is_worded_final_only_on_its_last_repeat(engine) -> None:
    d = deps(DPD_80_NY)
    async with engine.begin() as c:
        await load_new_version(c, policy_doc(20, repeats=True), "ops", d, d.clock.now())
    await handle(engine, d, account("T-rep", due_date=DUE))
    for _ in range(8):
        await run_tick(engine, d)
        d.clock.advance(timedelta(days=10))
    got = [(n["step"], n["tier"]) for n in await notices(engine, "T-rep") if n["channel"] == "sms"]
    assert got == [(1, "reminder"), (2, "firm"), (3, "firm"), (4, "firm"), (5, "final")]


async def test_an_explicit_by_age_policy_still_starts_at_the_highest_step_met(engine) -> None:
    d = deps(DPD_80_NY)
    async with engine.begin() as c:
        await load_new_version(c, policy_doc(30, "start_tier: by_age\n"), "ops", d, d.clock.now())
    await handle(engine, d, account("T-age", due_date=DUE))
    await run_tick(engine, d)
    ns = await notices(engine, "T-age")
    assert [(n["step"], n["tier"], n["policy_version"]) for n in ns] == [(3, "final", 30), (3, "final", 30)]
