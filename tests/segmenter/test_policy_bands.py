"""Issue #20 item 3: policies select on the risk band. A policy step may be restricted to bands
(`risk_bands`); an account outside them skips it and gets the next step that applies to it. The band is the
one campaigns use (the fresh model score's, else the rule score's), so a new score re-plans the account,
and a step whose band no longer holds when it falls due is cancelled and the next one armed. A notice is
worded final only when it is the last step for the account's band. Real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from arrears_segmenter.schedule.models import Policy, parse_policy
from arrears_segmenter.schedule.planner import first_step, plan_next
from arrears_segmenter.schedule.service import load_new_version
from arrears_shared.events import RiskBand, Tier
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .support import account, deps, handle, notices, run_tick, timers
from .test_scores import NOON_NY, pending_due, scored

BANDED = """
id: banded
version: {version}
stop_conditions: [paid, promise_to_pay, dispute, opt_out, do_not_contact]
steps:
  - step: 1
    tier: reminder
    min_days_past_due: 1
    channels: [sms, email]
    template_id: reminder-v1
  - step: 2
    tier: firm
    min_days_past_due: 15
    min_interval_days: 7
    channels: [sms]
    template_id: firm-v1
    risk_bands: [high]
  - step: 3
    tier: firm
    min_days_past_due: 30
    min_interval_days: 14
    channels: [sms, email]
    template_id: firm-v1
  - step: 4
    tier: final
    min_days_past_due: 60
    min_interval_days: 7
    channels: [sms, email]
    template_id: final-v1
    risk_bands: [medium, high]
"""
DUE = date(2026, 3, 1)


def banded(version: int = 1) -> Policy:
    return parse_policy(BANDED.format(version=version))


def test_a_step_goes_only_to_its_bands_and_the_next_one_that_applies_follows() -> None:
    p = banded()
    at = datetime(2026, 4, 15, tzinfo=UTC)
    sent = at - timedelta(days=1)

    def after(last: int, band: str) -> int | None:
        plan = plan_next(p, last_step=last, last_step_at=sent, due_date=DUE, tz="UTC", now=at, band=band)
        return plan.step if plan else None

    assert [after(1, b) for b in ("low", "medium", "high")] == [3, 3, 2]
    # no step left for low: step 4 is armed all the same, to be decided (skipped, unless the band has
    # moved into it) when it falls due; after the last step the sequence is complete for everyone
    assert [after(3, b) for b in ("low", "medium", "high")] == [4, 4, 4]
    assert [after(4, b) for b in ("low", "high")] == [None, None]
    # the interval counts from the last step sent, whichever was skipped in between
    low = plan_next(p, last_step=1, last_step_at=sent, due_date=DUE, tz="UTC", now=at, band="low")
    assert low is not None and low.due_at == sent + timedelta(days=14)
    # never contacted, by_age: the highest step met *for its band*
    by_age = parse_policy(BANDED.format(version=1) + "start_tier: by_age\n")
    assert [first_step(by_age, 70, b) for b in ("low", "medium", "high")] == [3, 4, 4]
    assert [first_step(p, 70, b) for b in ("low", "high")] == [1, 1]
    # a band nobody knows gets only the unrestricted steps
    assert first_step(by_age, 70, None) == 3


def test_final_wording_follows_the_last_step_for_the_band() -> None:
    p = banded()
    assert p.last_step_for("low") == 3 and p.last_step_for("high") == 4
    assert p.wording_tier(4, "high") is Tier.FINAL
    # a policy whose final step is not for low-risk accounts: their last step is firm, and nothing they
    # get calls itself final
    assert {p.wording_tier(s, "low") for s in (1, 3)} == {Tier.REMINDER, Tier.FIRM}
    # the final step restricted to low while a later unrestricted step exists: worded firm for everyone
    swapped = parse_policy(
        BANDED.format(version=1)
        .replace("    risk_bands: [medium, high]\n", "")
        .replace("tier: firm\n    min_days_past_due: 15", "tier: final\n    min_days_past_due: 15")
    )
    assert swapped.wording_tier(2, "high") is Tier.FIRM


def test_risk_bands_are_checked_and_stay_out_of_the_stored_body_when_unset() -> None:
    for bad, msg in (
        ("[]", "at least one band"),
        ("[high, high]", "none repeated"),
        ("[severe]", "risk_bands"),
    ):
        with pytest.raises(ValueError, match=msg):
            parse_policy(BANDED.format(version=1).replace("risk_bands: [high]", f"risk_bands: {bad}"))
    body = banded().model_dump(mode="json")
    assert [s.get("risk_bands") for s in body["steps"]] == [None, ["high"], None, ["medium", "high"]]
    assert ["risk_bands" in s for s in body["steps"]] == [False, True, False, True]  # older replicas read it
    assert parse_policy_body(body) == banded()


def parse_policy_body(body: dict[str, object]) -> Policy:
    return Policy.model_validate(body)


async def _use_banded(engine: AsyncEngine, d, version: int) -> None:  # type: ignore[no-untyped-def]
    async with engine.begin() as c:
        await load_new_version(c, BANDED.format(version=version), "ops", d, d.clock.now())


async def test_a_new_score_re_plans_the_account_onto_the_steps_of_its_band(engine) -> None:
    d = deps(NOON_NY)  # 45 days past due; rule band low
    await _use_banded(engine, d, 101)
    await handle(engine, d, account("B-1", due_date=DUE))
    await run_tick(engine, d)
    assert {n["step"] for n in await notices(engine, "B-1")} == {1}
    # low (the rule band): step 2 is not for it; step 3 14 days after the reminder
    assert await pending_due(engine, "B-1") == [(3, NOON_NY + timedelta(days=14))]
    # the model says high: step 2 (7 days after the reminder) is armed instead
    await handle(engine, d, scored("B-1", band=RiskBand.HIGH))
    assert await pending_due(engine, "B-1") == [(2, NOON_NY + timedelta(days=7))]
    # and low again: back to step 3
    await handle(
        engine,
        d,
        scored("B-1", band=RiskBand.LOW, risk_score=10, scored_at=datetime(2026, 4, 15, 6, tzinfo=UTC)),
    )
    assert await pending_due(engine, "B-1") == [(3, NOON_NY + timedelta(days=14))]


async def test_a_step_whose_band_lapsed_before_it_fell_due_is_cancelled_and_the_next_armed(engine) -> None:
    d = deps(NOON_NY)
    await _use_banded(engine, d, 102)
    await handle(engine, d, account("B-2", due_date=DUE), scored("B-2", band=RiskBand.HIGH))
    await run_tick(engine, d)
    assert await pending_due(engine, "B-2") == [(2, NOON_NY + timedelta(days=7))]
    # a week on, the score (15 April) is stale: the account is back in its rule band (low) when step 2
    # falls due, so step 2 is not sent; step 3 is armed for its own time
    d.clock.advance(timedelta(days=7))
    await run_tick(engine, d)
    assert {n["step"] for n in await notices(engine, "B-2")} == {1}
    states = {t["step"]: (t["state"], t["reason"]) for t in await timers(engine, "B-2")}
    assert states[2] == ("cancelled", "risk_band")
    assert await pending_due(engine, "B-2") == [(3, NOON_NY + timedelta(days=14))]
    async with engine.connect() as c:
        logged = (
            await c.execute(
                text(
                    "SELECT outcome, rule_id FROM segmenter.decisions WHERE account_id = 'B-2' AND step = 2"
                    " ORDER BY at"
                )
            )
        ).all()
    assert ("cancelled", "risk_band") in [tuple(r) for r in logged]
    # step 3 goes out; a person pins a low risk score (the rule score alone turns medium at about 80 days
    # past due), so the sequence ends there: step 4 is decided when due, and passed over
    async with engine.begin() as c:
        await c.execute(text("UPDATE segmenter.accounts SET risk_override = 10 WHERE account_id = 'B-2'"))
    d.clock.advance(timedelta(days=7))
    await run_tick(engine, d)
    d.clock.advance(timedelta(days=30))
    await run_tick(engine, d)
    sms = [(n["step"], n["tier"]) for n in await notices(engine, "B-2") if n["channel"] == "sms"]
    assert sms == [(1, "reminder"), (3, "firm")]
    assert await pending_due(engine, "B-2") == []


async def test_a_high_risk_account_gets_every_step_of_its_band_and_the_final_notice(engine) -> None:
    d = deps(NOON_NY)
    await _use_banded(engine, d, 103)
    await handle(engine, d, account("B-3", due_date=DUE))
    for day in range(0, 40, 7):
        # a fresh high score every week
        today = (NOON_NY + timedelta(days=day)).date()
        await handle(
            engine,
            d,
            scored(
                "B-3",
                band=RiskBand.HIGH,
                scored_on=today,
                scored_at=datetime.combine(today, datetime.min.time(), UTC) + timedelta(hours=5),
            ),
        )
        await run_tick(engine, d)
        d.clock.advance(timedelta(days=7))
    sms = [(n["step"], n["tier"]) for n in await notices(engine, "B-3") if n["channel"] == "sms"]
    assert sms == [(1, "reminder"), (2, "firm"), (3, "firm"), (4, "final")]


async def test_next_steps_show_the_tier_each_account_will_be_sent(engine) -> None:
    """Step 3 is the last step for a low-risk account (step 4 is for medium and high): worded final for it,
    firm for a high-risk one, and the next-steps list says so."""
    from arrears_segmenter.nextsteps.service import next_steps

    d = deps(NOON_NY)
    doc = BANDED.format(version=104).replace(
        "tier: firm\n    min_days_past_due: 30", "tier: final\n    min_days_past_due: 30"
    )
    async with engine.begin() as c:
        await load_new_version(c, doc, "ops", d, d.clock.now())
    await handle(engine, d, account("B-low", due_date=DUE), account("B-high", due_date=DUE))
    await handle(engine, d, scored("B-high", band=RiskBand.HIGH))
    await run_tick(engine, d)  # step 1 for both
    async with engine.connect() as c:
        shown, _ = await next_steps(
            c, d.policy, 10, None, ["B-low", "B-high"], scoring=d.score_use, now=d.clock.now()
        )
    assert {(s.account_id, s.step, s.tier) for s in shown} == {("B-low", 3, "final"), ("B-high", 2, "firm")}
    d.clock.advance(timedelta(days=14))  # high: step 2 went at day 7 (tick below), step 3 next
    await handle(
        engine,
        d,
        scored("B-high", band=RiskBand.HIGH, scored_on=d.clock.now().date(), scored_at=d.clock.now()),
    )
    async with engine.connect() as c:
        shown, _ = await next_steps(c, d.policy, 10, None, ["B-high"], scoring=d.score_use, now=d.clock.now())
    assert [(s.step, s.tier) for s in shown] == [(2, "firm")]
    await run_tick(engine, d)
    async with engine.connect() as c:
        shown, _ = await next_steps(c, d.policy, 10, None, ["B-high"], scoring=d.score_use, now=d.clock.now())
    assert [(s.step, s.tier) for s in shown] == [(3, "firm")]  # step 4 (final) follows for high


async def test_an_account_whose_band_rises_after_its_last_step_for_low_still_gets_the_final(engine) -> None:
    """No event re-plans an account whose rule score drifts up with its age: the next step (for medium and
    high) is armed all the same and decided when it falls due, with the band of that moment."""
    d = deps(NOON_NY)
    await _use_banded(engine, d, 105)
    await handle(engine, d, account("B-up", due_date=DUE))
    await run_tick(engine, d)  # step 1 (low)
    d.clock.advance(timedelta(days=14))
    await run_tick(engine, d)  # step 3 (step 2 is for high)
    assert await pending_due(engine, "B-up") == [(4, NOON_NY + timedelta(days=21))]
    # a person pins a medium risk score; nothing else happens until step 4 falls due
    async with engine.begin() as c:
        await c.execute(text("UPDATE segmenter.accounts SET risk_override = 50 WHERE account_id = 'B-up'"))
    d.clock.advance(timedelta(days=7))
    await run_tick(engine, d)
    sms = [(n["step"], n["tier"]) for n in await notices(engine, "B-up") if n["channel"] == "sms"]
    assert sms == [(1, "reminder"), (3, "firm"), (4, "final")]


def test_a_person_skips_steps_in_order_even_past_the_last_step_for_the_band() -> None:
    """A low-risk account after step 3 (step 4 and its repeats are for medium and high): skipping the
    repeat 6 is refused — step 4 comes first — instead of passing over steps the band may still reach."""
    from arrears_segmenter.accounts.account import Account
    from arrears_segmenter.overrides.actions import Rejected, skip_step
    from arrears_shared.events import OverrideRequested

    p = parse_policy(
        BANDED.format(version=1).replace(
            "template_id: final-v1", "template_id: final-v1\n    repeat_every_days: 7\n    max_repeats: 2"
        )
    )
    acct = Account.new("B-skip", NOON_NY)
    acct.known, acct.due_date, acct.last_step, acct.last_step_at = True, DUE, 3, NOON_NY
    ev = OverrideRequested(
        account_id="B-skip",
        override_id="o-1",
        action="skip_step",
        actor="cora",
        role="collector",
        step=6,
        requested_at=NOON_NY,
    )
    with pytest.raises(Rejected, match=r"not the next step \(next: 4\)"):
        skip_step(acct, ev, p, NOON_NY, "low")
    assert skip_step(acct, ev.model_copy(update={"step": 4}), p, NOON_NY, "low").skipped
    assert acct.last_step == 4
