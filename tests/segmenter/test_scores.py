"""Issue #20 item 3 (segmenter side): the model's scores (`account-scored`) are kept per account and used
while fresh — campaigns select on the model's band, the model's best channel goes first and a step is
placed at the model's best hour inside the compliance window. Real broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from arrears_segmenter.accounts.account import Account
from arrears_segmenter.accounts.models import FlagsUpdate
from arrears_segmenter.accounts.service import set_flags
from arrears_segmenter.campaigns import service as campaigns
from arrears_segmenter.campaigns.models import CampaignIn, CampaignStatus, Criteria
from arrears_segmenter.consumer import make_handler
from arrears_segmenter.scores.choice import ScoreUse, allowed_hour, at_best_hour
from arrears_segmenter.scores.models import Score
from arrears_segmenter.settings import SegmenterSettings
from arrears_segmenter.topology import TOPOLOGY
from arrears_shared import topics
from arrears_shared.db.engine import make_engine
from arrears_shared.events import AccountScored, RiskBand, ScoreReason
from arrears_shared.stream.runner import StreamRunner
from arrears_shared.stream.transaction import transaction
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .support import SCHEMA, account, deps, handle, notices, run_tick, timers
from .test_stream import _produce, _wait

NY = ZoneInfo("America/New_York")
NOON_NY = datetime(2026, 4, 15, 16, 0, tzinfo=UTC)  # 12:00 EDT; dpd 45 for due 1 Mar (rule band: low)


def scored(aid: str, **kw: Any) -> AccountScored:
    base: dict[str, Any] = {
        "account_id": aid,
        "scored_on": date(2026, 4, 15),
        "model_version": "m-test-1",
        "risk_score": 80,
        "band": RiskBand.HIGH,
        "p_pay_14d": 0.12,
        "dropout_risk": 0.7,
        "expected_recovery": 0.4,
        "expected_recovery_minor": 20_000,
        "currency": "USD",
        "best_channel": None,
        "best_hour": None,
        "reasons": [ScoreReason(feature="broken_promises", label="Broke 2 promises", contribution=21.5)],
        "scored_at": datetime(2026, 4, 15, 5, tzinfo=UTC),
    }
    return AccountScored(**(base | kw))


async def stored(engine: AsyncEngine, aid: str) -> dict[str, Any] | None:
    async with engine.connect() as c:
        row = (
            (
                await c.execute(
                    text("SELECT * FROM segmenter.account_scores WHERE account_id = :a"), {"a": aid}
                )
            )
            .mappings()
            .first()
        )
    return dict(row) if row else None


async def pending_due(engine: AsyncEngine, aid: str) -> list[tuple[int, datetime]]:
    return [(t["step"], t["due_at"]) for t in await timers(engine, aid) if t["state"] == "pending"]


def test_best_hour_outside_the_window_becomes_the_nearest_allowed_hour() -> None:
    eight, nine_pm = time(8), time(21)
    assert [allowed_hour(h, eight, nine_pm) for h in (6, 8, 13, 20, 21, 23)] == [8, 8, 13, 20, 20, 20]
    assert allowed_hour(7, time(8), time(19)) == 8  # India's window (RBI)
    assert allowed_hour(3, time(22), time(6)) == 3 and allowed_hour(12, time(22), time(6)) == 5


def test_an_overdue_step_waits_for_the_next_best_hour_unless_it_is_that_hour_now() -> None:
    acct = Account.new("X", NOON_NY)
    acct.timezone, acct.country, acct.region = "America/New_York", "US", "NY"
    score = Score("X", date(2026, 4, 15), "m", 80, "high", None, 18, [])
    use = ScoreUse()
    overdue = NOON_NY - timedelta(days=3)
    six_pm = datetime(2026, 4, 15, 18, tzinfo=NY)
    assert at_best_hour(overdue, acct, score, use, NOON_NY) == six_pm
    assert at_best_hour(overdue, acct, score, use, six_pm + timedelta(minutes=30)) == overdue  # goes now
    assert at_best_hour(NOON_NY + timedelta(days=2), acct, score, use, NOON_NY) == six_pm + timedelta(days=2)
    no_hour = Score("X", date(2026, 4, 15), "m", 80, "high", None, None, [])
    assert at_best_hour(overdue, acct, no_hour, use, NOON_NY) == overdue


async def test_a_new_score_moves_the_next_step_to_the_best_hour_inside_the_window(engine) -> None:
    d = deps(NOON_NY)
    await handle(engine, d, account("S-hour"), account("S-late"), account("S-early"), account("S-stale"))
    for aid in ("S-hour", "S-late", "S-early", "S-stale"):
        assert await pending_due(engine, aid) == [(1, NOON_NY)]  # due now: no score yet
    await handle(
        engine,
        d,
        scored("S-hour", best_hour=18),
        scored("S-late", best_hour=23),  # after 21:00: the window's last hour
        scored("S-early", best_hour=6),  # before 08:00 and 06:00 has passed today: 08:00 tomorrow
        scored("S-stale", best_hour=18, scored_on=date(2026, 4, 11)),  # 4 days old: not used
    )
    today = date(2026, 4, 15)
    assert await pending_due(engine, "S-hour") == [(1, datetime.combine(today, time(18), NY))]
    assert await pending_due(engine, "S-late") == [(1, datetime.combine(today, time(20), NY))]
    assert await pending_due(engine, "S-early") == [
        (1, datetime.combine(today + timedelta(days=1), time(8), NY))
    ]
    assert await pending_due(engine, "S-stale") == [(1, NOON_NY)]
    # nothing goes before its hour; at the hour the step goes out
    await run_tick(engine, d)
    assert await notices(engine, "S-hour") == [] and len(await notices(engine, "S-stale")) == 2
    d.clock.set(datetime.combine(today, time(18), NY))
    await run_tick(engine, d)
    assert [n["channel"] for n in await notices(engine, "S-hour")] == ["sms", "email"]
    # the next step (firm, 7 days after the reminder) is placed at the best hour too
    assert await pending_due(engine, "S-hour") == [
        (2, datetime.combine(today + timedelta(days=7), time(18), NY))
    ]


async def test_an_older_or_replayed_score_never_replaces_a_newer_one(engine) -> None:
    d = deps(NOON_NY)
    await handle(engine, d, scored("S-keep", risk_score=70, scored_on=date(2026, 4, 15)))
    await handle(engine, d, scored("S-keep", risk_score=20, band=RiskBand.LOW, scored_on=date(2026, 4, 14)))
    row = await stored(engine, "S-keep")
    assert row is not None and (row["risk_score"], row["band"], row["scored_on"]) == (
        70,
        "high",
        date(2026, 4, 15),
    )
    await handle(
        engine, d, scored("S-keep", risk_score=40, band=RiskBand.MEDIUM, scored_on=date(2026, 4, 16))
    )
    row = await stored(engine, "S-keep")
    assert row is not None and (row["risk_score"], row["band"]) == (40, "medium")
    assert row["reasons"] == [
        {"feature": "broken_promises", "label": "Broke 2 promises", "contribution": 21.5}
    ]
    # a score for an account the segmenter has not seen yet: kept, and no timer or placeholder dunned
    assert await timers(engine, "S-keep") == []


async def test_best_channel_goes_first_when_the_account_can_be_reached_there(engine) -> None:
    d = deps(NOON_NY)
    await handle(
        engine,
        d,
        scored("S-mail", best_channel="email"),
        scored("S-nomail", best_channel="email"),
        scored("S-wa", best_channel="whatsapp"),  # not a channel of the step: the policy's order
        account("S-mail"),
        account("S-nomail", email_consent=False),
        account("S-wa"),
    )
    await run_tick(engine, d)
    assert [n["channel"] for n in await notices(engine, "S-mail")] == ["email", "sms"]
    assert [n["channel"] for n in await notices(engine, "S-nomail")] == ["sms"]
    assert [n["channel"] for n in await notices(engine, "S-wa")] == ["sms", "email"]


async def test_campaigns_select_on_the_fresh_model_band_else_the_rule_band(engine) -> None:
    d = deps(NOON_NY)
    async with engine.begin() as c:
        await campaigns.create(
            c,
            CampaignIn(
                campaign_id="model-high",
                name="High risk by the model",
                owner="recovery",
                criteria=Criteria(risk_bands=["high"]),
                priority=50,
            ),
            d.clock.now(),
        )
        await campaigns.transition(c, "model-high", CampaignStatus.ACTIVE, d.clock.now())
    await handle(
        engine,
        d,
        scored("S-hi"),
        scored("S-old", scored_on=date(2026, 4, 10)),  # stale: the rule score (low) decides
        scored("S-pin"),
        account("S-hi"),
        account("S-old"),
        account("S-pin"),
        account("S-none"),
    )
    async with transaction(
        engine, SCHEMA, "segmenter"
    ) as c:  # a person pins a low risk score: it wins over the model
        await set_flags(
            c, "S-pin", FlagsUpdate(risk_override=10, reason="knows the customer"), d, NOON_NY, "a-1"
        )
    await run_tick(engine, d)
    got = {
        a: {n["campaign_id"] for n in await notices(engine, a)} for a in ("S-hi", "S-old", "S-pin", "S-none")
    }
    assert got == {
        "S-hi": {"model-high"},
        "S-old": {"baseline"},
        "S-pin": {"baseline"},
        "S-none": {"baseline"},
    }
    async with engine.begin() as c:
        await campaigns.transition(c, "model-high", CampaignStatus.COMPLETED, d.clock.now())


async def test_scores_through_the_runner_on_the_real_broker(broker, segmenter_url) -> None:
    """The production handler subscribed to account-scored (as the segmenter's topology declares) stores
    the score published on the broker and re-plans the account at its best hour."""
    assert topics.ACCOUNT_SCORED in TOPOLOGY.consumes
    tag = uuid.uuid4().hex[:8]
    aid, group = f"SC-{tag}", f"segmenter-scores-{tag}"
    subscribed = [topics.ACCOUNT_CHANGED, topics.ACCOUNT_SCORED]
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        for t in subscribed:
            with contextlib.suppress(Exception):
                await admin.create_topics([NewTopic(topics.dlq_topic(t, group), 1, 1)])
    finally:
        await admin.close()
    d = deps(NOON_NY)
    s = SegmenterSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=segmenter_url,
        runner_poll_timeout_ms=100,
    )
    engine = make_engine(segmenter_url)
    runner = StreamRunner(
        group=group,
        topics=subscribed,
        handler=make_handler(d),
        engine=engine,
        schema="segmenter",
        settings=s,
        service="segmenter",
    )
    task = asyncio.create_task(runner.run())
    try:
        await _produce(broker.bootstrap_servers, [(account(aid), f"ac-{aid}")])

        async def armed() -> bool:
            return await pending_due(engine, aid) == [(1, NOON_NY)]

        await _wait(armed, "the account's first timer")
        score = scored(aid, best_hour=17)
        await _produce(broker.bootstrap_servers, [(score, f"sc-{aid}"), (score, f"sc-{aid}")])  # + a replay

        async def placed() -> bool:
            return await pending_due(engine, aid) == [(1, datetime(2026, 4, 15, 17, tzinfo=NY))]

        await _wait(placed, "the timer at the best hour")
        row = await stored(engine, aid)
        assert row is not None and (row["band"], row["best_hour"], row["model_version"]) == (
            "high",
            17,
            "m-test-1",
        )
    finally:
        runner.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await engine.dispose()


async def test_a_new_score_keeps_the_step_inside_the_debtors_quiet_times(engine) -> None:
    """The debtor said "not before 15:00"; a daily score (best hour 10:00) re-plans the account and must
    not move the step back before 15:00 (that re-plan once ran without the compliance rules and undid the
    debtor's window)."""
    from arrears_shared.events import OverrideRequested

    d = deps(NOON_NY)
    await handle(engine, d, account("S-quiet"))
    await handle(
        engine,
        d,
        OverrideRequested(
            account_id="S-quiet",
            override_id=str(uuid.uuid4()),
            action="set_channel_preference",
            channels=["sms", "email"],
            contact_window={"not_before": "15:00"},  # type: ignore[arg-type]
            actor="portal:debtor:v1",
            role="system",
            requested_at=NOON_NY,
        ),
    )
    today = date(2026, 4, 15)
    assert await pending_due(engine, "S-quiet") == [(1, datetime.combine(today, time(15), NY))]
    # the debtor's own quiet times win over the model's hour: the step stays at 15:00, not back at noon
    await handle(engine, d, scored("S-quiet", best_hour=10))
    assert await pending_due(engine, "S-quiet") == [(1, datetime.combine(today, time(15), NY))]
