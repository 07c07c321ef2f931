"""Policies as versioned data, campaigns, the approval gate, operator flags and payment history —
against real Postgres, with the injectable clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from arrears_segmenter.accounts.models import FlagsUpdate
from arrears_segmenter.accounts.service import account_view, set_flags
from arrears_segmenter.approvals.service import Verdict, decide, held
from arrears_segmenter.campaigns import service as campaigns
from arrears_segmenter.campaigns.models import CampaignIn, CampaignStatus, Criteria
from arrears_segmenter.schedule.models import PolicyError, load_policy, parse_policy
from arrears_segmenter.schedule.service import adopt_configured, load_new_version
from arrears_segmenter.schedule.store import active
from arrears_shared.events import Intent
from arrears_shared.stream.transaction import transaction

from .support import (
    SCHEMA,
    account,
    decisions,
    deps,
    handle,
    notices,
    reply,
    run_tick,
    timers,
)

NOON_NY = datetime(2026, 4, 15, 16, 0, tzinfo=UTC)  # dpd 45 for due 1 Mar
DEFAULT_YAML = (
    __import__("importlib.resources").resources.files("arrears_segmenter") / "policies" / "default.yaml"
).read_text()


def test_policy_errors_name_the_problem_and_where() -> None:
    with pytest.raises(PolicyError) as e:
        parse_policy("id: x\nversion: [1\n")
    assert "not valid YAML" in str(e.value) and "line 3" in str(e.value)
    with pytest.raises(PolicyError) as e:
        parse_policy(DEFAULT_YAML.replace("tier: firm", "tier: rude").replace("version: 1", "version: 0"))
    locs = {err["loc"] for err in e.value.errors}
    assert locs == {"version", "steps.1.tier"}
    with pytest.raises(PolicyError, match="opt_out"):
        parse_policy(
            DEFAULT_YAML.replace(
                "stop_conditions: [paid, promise_to_pay, dispute, opt_out, ",
                "stop_conditions: [paid, promise_to_pay, dispute, ",
            )
        )
    with pytest.raises(PolicyError, match="must not decrease"):
        parse_policy(DEFAULT_YAML.replace("min_days_past_due: 60", "min_days_past_due: 20"))
    with pytest.raises(PolicyError, match="Extra inputs"):
        parse_policy(DEFAULT_YAML + "surprise: 1\n")
    assert load_policy().approval.balance_above_minor == 1_000_000


async def test_new_policy_version_replans_future_steps_only(engine) -> None:
    d = deps(NOON_NY)
    await handle(engine, d, account("P-1"))
    await run_tick(engine, d)
    assert [n["notice_id"] for n in await notices(engine, "P-1")] == [
        "P-1:default:v1:s1:c0:sms",
        "P-1:default:v1:s1:c0:email",
    ]
    v2 = DEFAULT_YAML.replace("version: 1", "version: 2").replace(
        "min_days_past_due: 30\n    min_interval_days: 7", "min_days_past_due: 30\n    min_interval_days: 10"
    )
    async with engine.begin() as c:
        loaded = await load_new_version(c, v2, "ops@example.com", d, d.clock.now())
    assert (loaded.version, loaded.replanned_accounts >= 1) == (2, True)
    (t,) = [t for t in await timers(engine, "P-1") if t["state"] == "pending"]
    # the firm notice moves from 7 to 10 days after the reminder; the reminder sent stays sent
    assert (t["step"], t["policy_version"], t["due_at"]) == (2, 2, NOON_NY + timedelta(days=10))
    with pytest.raises(PolicyError, match="higher than 2"):
        async with engine.begin() as c:
            await load_new_version(c, v2, "ops@example.com", d, d.clock.now())
    d.clock.set(NOON_NY + timedelta(days=7))  # v1's date: nothing
    assert await run_tick(engine, d) == 0
    d.clock.set(NOON_NY + timedelta(days=10))
    await run_tick(engine, d)
    ids = [n["notice_id"] for n in await notices(engine, "P-1")]
    assert ids[2:] == ["P-1:default:v2:s2:c0:sms", "P-1:default:v2:s2:c0:email"]
    assert len(ids) == len(set(ids)) == 4
    # a restart with the packaged v1 keeps the stored v2; a configured file with a newer version is adopted
    async with engine.begin() as c:
        assert await adopt_configured(c, d, d.clock.now()) is None
        d.policy = parse_policy(DEFAULT_YAML.replace("version: 1", "version: 3"))
        adopted = await adopt_configured(c, d, d.clock.now())
        assert adopted is not None and adopted.version == 3
        assert (await active(c, d.policy)).version == 3


async def test_campaign_lifecycle_and_every_notice_carries_its_campaign(engine) -> None:
    d = deps(NOON_NY)
    async with engine.begin() as c:
        await campaigns.create(
            c,
            CampaignIn(
                campaign_id="big-31-60",
                name="Large balances, 31-60 days",
                owner="team-a",
                goal="collect 40% by month end",
                criteria=Criteria(min_balance_minor=40_000, aging_buckets=["31-60"]),
                priority=10,
            ),
            d.clock.now(),
        )
        with pytest.raises(campaigns.CampaignConflict):
            await campaigns.create(c, CampaignIn(campaign_id="big-31-60", name="x", owner="y"), d.clock.now())
    await handle(engine, d, account("K-big"), account("K-small", balance_minor=5_000))
    await run_tick(engine, d)  # campaign still planned: the baseline campaign owns everything
    assert {n["campaign_id"] for n in await notices(engine, "K-big")} == {"baseline"}
    async with engine.begin() as c:
        active = await campaigns.transition(c, "big-31-60", CampaignStatus.ACTIVE, d.clock.now())
        assert active.status is CampaignStatus.ACTIVE
    await handle(engine, d, account("K-big2"), account("K-small2", balance_minor=5_000))
    await run_tick(engine, d)
    assert {n["campaign_id"] for n in await notices(engine, "K-big2")} == {"big-31-60"}
    assert {n["campaign_id"] for n in await notices(engine, "K-small2")} == {"baseline"}
    async with engine.begin() as c:
        await campaigns.transition(c, "big-31-60", CampaignStatus.COMPLETED, d.clock.now())
        with pytest.raises(campaigns.CampaignConflict, match="cannot go from completed"):
            await campaigns.transition(c, "big-31-60", CampaignStatus.ACTIVE, d.clock.now())
    assert all(n["campaign_id"] for n in await notices(engine))


async def test_high_balance_waits_for_a_person_then_goes_through_the_gate(engine) -> None:
    d = deps(NOON_NY)
    await handle(engine, d, account("H-1", balance_minor=2_000_000), account("H-2", balance_minor=2_000_000))
    await run_tick(engine, d)
    assert await notices(engine, "H-1") == [] and await notices(engine, "H-2") == []
    async with engine.connect() as c:
        waiting = {h.account_id: h for h in await held(c)}
    assert waiting["H-1"].rule_id == "approval.high_balance" and waiting["H-1"].step == 1
    assert any(r["outcome"] == "held" for r in await decisions(engine, "H-1"))
    d.clock.advance(timedelta(hours=3))
    await run_tick(engine, d)  # still held: nothing fires by itself
    assert await notices(engine, "H-1") == []
    now = d.clock.now()
    async with engine.begin() as c:
        assert await decide(c, "H-1", Verdict(step=1, cycle=0), True, d, now, "sup-ana")
        assert await decide(c, "H-2", Verdict(step=1, cycle=0, note="too harsh"), False, d, now, "sup-ana")
        assert not await decide(c, "H-2", Verdict(step=1, cycle=0), True, d, now, "sup-ana")
    # the decision is the actor's: on the timer and in the decision log
    decided = {a: [t for t in await timers(engine, a) if t["step"] == 1] for a in ("H-1", "H-2")}
    assert [(t["state"], t["approved_by"]) for t in decided["H-1"]] == [("pending", "sup-ana")]
    assert [(t["state"], t["approved_by"]) for t in decided["H-2"]] == [("suppressed", "sup-ana")]
    granted = [r["reason"] for r in await decisions(engine, "H-1") if r["outcome"] == "approved"]
    assert granted == ["sup-ana"]
    rejected = [r["reason"] for r in await decisions(engine, "H-2") if r["outcome"] == "rejected"]
    assert rejected == ["sup-ana: too harsh"]
    await run_tick(engine, d)
    assert [n["step"] for n in await notices(engine, "H-1")] == [1, 1]
    assert await notices(engine, "H-2") == []
    (t,) = [t for t in await timers(engine, "H-2") if t["state"] == "pending"]
    assert t["step"] == 2  # the rejected step is skipped, the next one planned (and will be held again)
    outcomes = [(r["outcome"], r["rule_id"]) for r in await decisions(engine, "H-2")]
    assert ("rejected", "approval.rejected") in outcomes


async def test_operator_flags_complex_and_do_not_contact(engine) -> None:
    d = deps(datetime(2026, 3, 5, 17, tzinfo=UTC))
    await handle(engine, d, account("F-1"), account("F-2"))
    async with transaction(engine, SCHEMA, "segmenter") as c:
        now = d.clock.now()
        await set_flags(c, "F-1", FlagsUpdate(do_not_contact=True, reason="cease letter"), d, now, "agent-7")
        await set_flags(c, "F-2", FlagsUpdate(complex=True, risk_override=90), d, now, "agent-7")
        assert not await set_flags(c, "nope", FlagsUpdate(), d, now, "a")
    assert not any(t["state"] == "pending" for t in await timers(engine, "F-1"))
    await run_tick(engine, d)
    assert await notices(engine, "F-1") == [] and await notices(engine, "F-2") == []
    rows = await decisions(engine, "F-1")
    assert [r["rule_id"] for r in rows if r["outcome"] == "cancelled"] == ["do_not_contact"]
    flagged = next(r["reason"] for r in rows if r["rule_id"] == "override.flags")
    assert flagged.startswith("agent-7: do_not_contact False -> True") and "cease letter" in flagged
    async with engine.connect() as c:
        v = await account_view(c, "F-2", d, d.clock.now())
    assert v is not None and v.complex and v.risk_score == 90 and v.segment.endswith("risk-high")
    assert [t.state for t in v.timers] == ["held"]
    async with transaction(engine, SCHEMA, "segmenter") as c:  # DNC lifted: the sequence resumes
        await set_flags(c, "F-1", FlagsUpdate(do_not_contact=False), d, d.clock.now(), "agent-7")
    await run_tick(engine, d)
    assert {n["channel"] for n in await notices(engine, "F-1")} == {"sms", "email"}


async def test_partial_payments_and_broken_promises_shape_the_segment(engine) -> None:
    d = deps(datetime(2026, 3, 5, 17, tzinfo=UTC))
    await handle(engine, d, account("S-1"))
    await handle(
        engine,
        d,
        account(
            "S-1",
            change="payment",
            source="payment",
            balance_minor=30_000,
            content_hash="p1",
            as_of=datetime(2026, 3, 5, tzinfo=UTC),
            last_payment_minor=20_000,
            last_payment_date=date(2026, 3, 5),
        ),
    )
    async with engine.connect() as c:
        v = await account_view(c, "S-1", d, d.clock.now())
    assert v is not None and (v.partial_payments, v.history) == (1, "partial_payer")
    await handle(engine, d, reply("S-1", Intent.PROMISE_TO_PAY, promise_date=date(2026, 3, 10)))
    d.clock.set(datetime(2026, 3, 11, 15, tzinfo=UTC))
    await run_tick(engine, d)
    async with engine.connect() as c:
        v2 = await account_view(c, "S-1", d, d.clock.now())
    assert v2 is not None and (v2.broken_promises, v2.history, v2.hold) == (1, "broken_promise", None)
    assert v2.risk_score > v.risk_score
    assert any(r["rule_id"] == "promise_broken" for r in await decisions(engine, "S-1"))
    assert [n["tier"] for n in await notices(engine, "S-1")] == ["reminder", "reminder"]


async def test_fallback_channel_order_and_repeats_of_the_last_step(engine) -> None:
    d = deps(NOON_NY)
    doc = (
        DEFAULT_YAML.replace("version: 1", "version: 10")
        .replace("    channels: [sms, email]\n", "    channels: [sms, email]\n    channel_mode: fallback\n")
        .replace(
            "template_id: final-v1", "template_id: final-v1\n    repeat_every_days: 10\n    max_repeats: 2"
        )
    ) + "start_tier: by_age\n"
    async with engine.begin() as c:
        await load_new_version(c, doc, "ops", d, d.clock.now())
    await handle(
        engine,
        d,
        account("R-both", due_date=date(2026, 2, 1)),
        account("R-mail", due_date=date(2026, 2, 1), sms_consent=False),
    )
    for _ in range(6):
        await run_tick(engine, d)
        d.clock.advance(timedelta(days=5))
    both = await notices(engine, "R-both")
    assert [(n["step"], n["tier"], n["channel"], n["fallback_channels"]) for n in both] == [
        (3, "firm", "sms", ["email"]),  # final only on the last repeat: people come next
        (4, "firm", "sms", ["email"]),
        (5, "final", "sms", ["email"]),
    ]
    mail = await notices(engine, "R-mail")
    assert [(n["step"], n["channel"], n["fallback_channels"]) for n in mail] == [
        (3, "email", []),
        (4, "email", []),
        (5, "email", []),
    ]
    d.clock.advance(timedelta(days=60))
    await run_tick(engine, d)
    assert len(await notices(engine, "R-both")) == 3  # two repeats at most
