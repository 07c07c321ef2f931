"""Manual overrides from escalation (`overrides` topic) applied by the segmenter: every action against the
real PostgreSQL (consumer handler + timer ticks with the injectable clock), and once through the real
broker and StreamRunner (inbox dedupe, malformed record to the DLQ)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from arrears_segmenter.campaigns import service as campaigns
from arrears_segmenter.campaigns.models import CampaignIn, CampaignStatus, Criteria
from arrears_segmenter.consumer import make_handler
from arrears_segmenter.deps import Deps
from arrears_segmenter.settings import SegmenterSettings
from arrears_shared import topics, topology
from arrears_shared.cloudevents import encode, header_map
from arrears_shared.db.engine import make_engine
from arrears_shared.events import Event, Intent, OverrideRequested
from arrears_shared.stream import dead_letter as dl
from arrears_shared.stream.relay import OutboxRelay, make_producer
from arrears_shared.stream.runner import StreamRunner
from arrears_shared.stream.transaction import transaction
from sqlalchemy.ext.asyncio import AsyncEngine

from .support import SCHEMA, account, decisions, deps, envelope, notices, reply, run_tick, timers

NOON_NY = datetime(2026, 4, 15, 16, 0, tzinfo=UTC)  # 12:00 in New York
FIVE_DAYS_LATE = date(2026, 4, 10)  # dpd 5 at NOON_NY: step 1 (reminder) now, step 2 at dpd 30


def ov(
    aid: str, action: str, *, actor: str = "sup-1", role: str = "supervisor", **kw: Any
) -> OverrideRequested:
    return OverrideRequested(
        account_id=aid,
        override_id=str(uuid.uuid4()),
        action=action,  # type: ignore[arg-type]
        actor=actor,
        role=role,  # type: ignore[arg-type]
        requested_at=datetime(2026, 1, 1, tzinfo=UTC),
        **kw,
    )


async def consume(engine: AsyncEngine, d: Deps, *events: Event) -> None:
    """One batch through the segmenter's consumer handler, in one transaction (as the runner does)."""
    async with transaction(engine, SCHEMA, "segmenter") as tx:
        await make_handler(d)([envelope(e) for e in events], tx)


async def started(engine: AsyncEngine, *ids: str, **acct: Any) -> Deps:
    """Accounts five days late whose reminder (step 1) went out at NOON_NY."""
    d = deps(NOON_NY)
    await consume(engine, d, *[account(a, due_date=FIVE_DAYS_LATE, **acct) for a in ids])
    await run_tick(engine, d)
    for a in ids:
        assert {(n["step"], n["channel"]) for n in await notices(engine, a)} == {(1, "sms"), (1, "email")}
    return d


async def steps_sent(engine: AsyncEngine, aid: str) -> list[tuple[int, str]]:
    return [(n["step"], n["channel"]) for n in await notices(engine, aid)]


async def override_log(engine: AsyncEngine, aid: str) -> list[tuple[str, str, str]]:
    return [
        (r["outcome"], r["rule_id"], r["reason"])
        for r in await decisions(engine, aid)
        if r["rule_id"].startswith("override.")
    ]


async def active_timer(engine: AsyncEngine, aid: str) -> dict[str, Any] | None:
    live = [t for t in await timers(engine, aid) if t["state"] in ("pending", "held")]
    assert len(live) <= 1, live
    return live[0] if live else None


async def test_pause_stops_the_sequence_until_resume_which_replans(engine) -> None:
    d = await started(engine, "O-P1")
    await consume(
        engine, d, ov("O-P1", "pause", reason="customer in hospital", actor="agent-3", role="collector")
    )
    assert await active_timer(engine, "O-P1") is None  # cancelled: nothing is planned while paused
    log = await override_log(engine, "O-P1")
    assert log == [("updated", "override.pause", "agent-3: paused until resumed (customer in hospital)")]
    d.clock.advance(timedelta(days=30))  # step 2 would have been due at dpd 30
    await run_tick(engine, d)
    assert await steps_sent(engine, "O-P1") == [(1, "sms"), (1, "email")]
    await consume(engine, d, ov("O-P1", "resume", reason="back home"))
    t = await active_timer(engine, "O-P1")
    assert t is not None and (t["step"], t["due_at"] <= d.clock.now()) == (2, True)
    await run_tick(engine, d)
    await run_tick(engine, d)
    assert await steps_sent(engine, "O-P1") == [(1, "sms"), (1, "email"), (2, "sms"), (2, "email")]
    assert (await override_log(engine, "O-P1"))[-1] == (
        "updated",
        "override.resume",
        "sup-1: resumed: ended pause by agent-3 (back home)",
    )
    await consume(engine, d, ov("O-P1", "resume"))  # nothing left to resume
    assert (await override_log(engine, "O-P1"))[-1][0] == "ignored"


async def test_snooze_and_timed_pause_move_the_next_step_to_their_end(engine) -> None:
    d = await started(engine, "O-S1", "O-S2")
    until = NOON_NY + timedelta(days=30)  # step 2 falls due at dpd 30 = 5 days earlier
    await consume(
        engine,
        d,
        ov("O-S1", "snooze", until=until, reason="asked for a month"),
        ov("O-S2", "snooze", reason="no date"),  # rejected: a snooze needs `until`
        ov("O-S2", "pause", until=NOON_NY - timedelta(hours=1)),  # rejected: already past
    )
    t = await active_timer(engine, "O-S1")
    assert t is not None and (t["step"], t["due_at"]) == (2, until)
    assert [x[0] for x in await override_log(engine, "O-S2")] == ["rejected", "rejected"]
    assert "needs `until`" in (await override_log(engine, "O-S2"))[0][2]
    d.clock.set(NOON_NY + timedelta(days=26))  # S2 (not snoozed) gets step 2, S1 does not
    await run_tick(engine, d)
    assert await steps_sent(engine, "O-S1") == [(1, "sms"), (1, "email")]
    assert (2, "email") in await steps_sent(engine, "O-S2")
    d.clock.set(until + timedelta(minutes=1))
    await run_tick(engine, d)
    assert await steps_sent(engine, "O-S1") == [(1, "sms"), (1, "email"), (2, "sms"), (2, "email")]


async def test_skip_step_marks_it_skipped_and_plans_the_next(engine) -> None:
    d = await started(engine, "O-K1")
    await consume(
        engine,
        d,
        ov("O-K1", "skip_step", step=3),  # not the next step
        ov("O-K1", "skip_step", step=1),  # already sent
        ov("O-K1", "skip_step", step=9),  # out of range
        ov("O-K1", "skip_step", step=2, reason="firm tone not appropriate"),
    )
    log = await override_log(engine, "O-K1")
    assert [x[0] for x in log] == ["rejected", "rejected", "rejected", "updated"]
    assert "not the next step (next: 2)" in log[0][2] and "already done" in log[1][2]
    assert "out of range" in log[2][2]
    assert log[3][2] == "sup-1: step 2 of cycle 0 skipped (firm tone not appropriate)"
    states = {t["step"]: (t["state"], t["reason"]) for t in await timers(engine, "O-K1")}
    assert states[2] == ("suppressed", "override.skip_step") and states[3][0] == "pending"
    d.clock.set(datetime(2026, 6, 10, 16, tzinfo=UTC))  # dpd 61: past the final step's threshold
    await run_tick(engine, d)
    assert await steps_sent(engine, "O-K1") == [(1, "sms"), (1, "email"), (3, "sms"), (3, "email")]


async def test_approve_step_releases_a_held_step_through_the_approval_code(engine) -> None:
    d = deps(NOON_NY)
    await consume(engine, d, account("O-A1", balance_minor=2_000_000, due_date=FIVE_DAYS_LATE))
    await run_tick(engine, d)
    assert (await active_timer(engine, "O-A1") or {}).get("state") == "held"
    await consume(
        engine,
        d,
        ov("O-A1", "approve_step", step=1, actor="agent-1", role="collector"),  # collectors cannot approve
        ov("O-A1", "approve_step", step=2),  # step 2 is not the held one
        ov("O-A1", "approve_step", step=1, reason="called the customer first"),
    )
    log = [(r["outcome"], r["rule_id"], r["reason"]) for r in await decisions(engine, "O-A1")]
    assert ("rejected", "override.approve_step") in [x[:2] for x in log]
    assert ("approved", "approval.granted", "sup-1: called the customer first") in log
    assert "needs a supervisor" in log[-3][2] and "no step 2 of cycle 0 is held" in log[-2][2]
    await run_tick(engine, d)
    assert await steps_sent(engine, "O-A1") == [(1, "sms"), (1, "email")]


async def test_send_now_still_passes_the_gate_unless_a_supervisor_overrides_it(engine) -> None:
    d = await started(engine, "O-N1", "O-N2", "O-N3")
    await consume(engine, d, reply("O-N2", Intent.OPT_OUT, "sms"))
    night = datetime(2026, 4, 16, 7, tzinfo=UTC)  # 03:00 in New York: quiet hours
    d.clock.set(night)
    await consume(
        engine,
        d,
        ov("O-N1", "send_now", step=2, actor="agent-1", role="collector", reason="customer asked"),
        ov("O-N2", "send_now", step=2, gate_override=True, reason="court deadline tomorrow"),
        ov("O-N3", "send_now", step=2, gate_override=True, actor="agent-1", role="collector", reason="x"),
    )
    await run_tick(engine, d)
    # the agent's send-now waits for the contact window
    assert await steps_sent(engine, "O-N1") == [(1, "sms"), (1, "email")]
    t = await active_timer(engine, "O-N1")
    assert t is not None and t["step"] == 2 and t["due_at"] == datetime(2026, 4, 16, 12, tzinfo=UTC)
    deferred = [r for r in await decisions(engine, "O-N1") if r["outcome"] == "deferred"]
    assert {r["rule_id"] for r in deferred} == {"quiet_hours.US"}
    # the supervisor's override sends by email at night, but never by SMS to a customer who opted out
    assert await steps_sent(engine, "O-N2") == [(1, "sms"), (1, "email"), (2, "email")]
    log = {(r["outcome"], r["channel"]): r for r in await decisions(engine, "O-N2") if r["step"] == 2}
    assert log[("emitted", "email")]["rule_id"] == "override.gate"
    assert (
        "quiet_hours.US overridden by sup-1: court deadline tomorrow" in log[("emitted", "email")]["reason"]
    )
    assert log[("suppressed", "sms")]["rule_id"] == "opt_out.sms"
    # an agent cannot override the gate
    assert (await override_log(engine, "O-N3"))[-1][:2] == ("rejected", "override.send_now")
    d.clock.set(datetime(2026, 4, 16, 12, 5, tzinfo=UTC))
    await run_tick(engine, d)
    assert await steps_sent(engine, "O-N1") == [(1, "sms"), (1, "email"), (2, "sms"), (2, "email")]
    assert len(await steps_sent(engine, "O-N2")) == 3  # once, never twice
    # do-not-contact: send-now is refused, even with a gate override
    await consume(engine, d, ov("O-N3", "do_not_contact", reason="attorney letter"))
    await consume(engine, d, ov("O-N3", "send_now", step=2, gate_override=True, reason="please"))
    assert "dunning is stopped (do_not_contact)" in (await override_log(engine, "O-N3"))[-1][2]
    await run_tick(engine, d)
    assert await steps_sent(engine, "O-N3") == [(1, "sms"), (1, "email")]


async def test_channel_preference_and_per_channel_do_not_contact(engine) -> None:
    d = await started(engine, "O-C1", "O-C2")
    await consume(
        engine,
        d,
        ov("O-C1", "set_channel_preference", channels=["email"], reason="works nights"),
        ov("O-C2", "do_not_contact", channels=["sms"], reason="employer forbids texts"),
    )
    assert (await override_log(engine, "O-C1"))[-1][2] == "sup-1: channels from now on: email (works nights)"
    d.clock.set(NOON_NY + timedelta(days=26))
    await run_tick(engine, d)
    assert await steps_sent(engine, "O-C1") == [(1, "sms"), (1, "email"), (2, "email")]
    assert await steps_sent(engine, "O-C2") == [(1, "sms"), (1, "email"), (2, "email")]
    stopped = [r for r in await decisions(engine, "O-C2") if r["outcome"] == "suppressed"]
    assert [(r["step"], r["rule_id"]) for r in stopped] == [(2, "do_not_contact.sms")]
    await consume(engine, d, ov("O-C2", "do_not_contact", channels=["email"]))
    assert await active_timer(engine, "O-C2") is None  # no channel left: the sequence stops
    assert (await decisions(engine, "O-C2"))[-1]["rule_id"] == "do_not_contact"


async def test_mark_dispute_holds_until_resumed(engine) -> None:
    d = await started(engine, "O-D1")
    await consume(
        engine, d, ov("O-D1", "mark_dispute", actor="agent-2", role="collector", reason="says not hers")
    )
    assert await active_timer(engine, "O-D1") is None
    # (the dispute acknowledgement to the customer is logged after it: payments/confirmations.py)
    logged = [r["rule_id"] for r in await decisions(engine, "O-D1")]
    assert [r for r in logged if not r.startswith("customer_notice.")][-1] == "dispute_pause"
    d.clock.set(NOON_NY + timedelta(days=26))
    await run_tick(engine, d)
    assert await steps_sent(engine, "O-D1") == [(1, "sms"), (1, "email")]
    await consume(engine, d, ov("O-D1", "resume", reason="debt validated"))
    assert "ended dispute hold" in (await override_log(engine, "O-D1"))[-1][2]
    await run_tick(engine, d)
    assert len(await steps_sent(engine, "O-D1")) == 4


async def test_resume_dunning_after_a_broken_promise_makes_the_next_step_due_now_once(engine) -> None:
    d = await started(engine, "O-R1")
    promised = date(2026, 4, 25)
    await consume(engine, d, reply("O-R1", Intent.PROMISE_TO_PAY, promise_date=promised))
    t = await active_timer(engine, "O-R1")
    assert t is not None and t["step"] == 2
    d.clock.set(datetime(2026, 4, 27, 16, tzinfo=UTC))  # escalation found the promise broken
    await consume(
        engine, d, ov("O-R1", "resume_dunning", actor="rule:broken_promise", role="system", reason="p")
    )
    t = await active_timer(engine, "O-R1")
    assert t is not None and (t["step"], t["due_at"]) == (2, d.clock.now())  # due now, not at dpd 30
    await run_tick(engine, d)
    assert await steps_sent(engine, "O-R1") == [(1, "sms"), (1, "email"), (2, "sms"), (2, "email")]
    # a second resume (replayed under another id) finds no promise hold and sends nothing more
    await consume(engine, d, ov("O-R1", "resume_dunning", actor="rule:broken_promise", role="system"))
    await run_tick(engine, d)
    assert len(await steps_sent(engine, "O-R1")) == 4
    log = await override_log(engine, "O-R1")
    assert [x[0] for x in log] == ["updated", "ignored"]
    assert log[0][2] == "rule:broken_promise: promise broken: hold cleared, step 2 due now (p)"
    async with engine.connect() as c:
        from arrears_segmenter.accounts.service import account_view

        view = await account_view(c, "O-R1", d, d.clock.now())
    assert view is not None and (view.status, view.hold, view.broken_promises) == ("open", None, 1)
    assert view.send_now_step is None  # fired


async def test_invalid_overrides_are_logged_as_rejected_not_raised(engine) -> None:
    d = await started(engine, "O-I1")
    await consume(
        engine,
        d,
        ov("O-NOBODY", "pause"),
        ov("O-I1", "send_now", step=-1),
        ov("O-I1", "skip_step"),  # no step
        ov("campaign:nope", "pause", campaign_id="nope"),
        ov("campaign:baseline", "skip_step", campaign_id="baseline", step=2),
    )
    assert await override_log(engine, "O-NOBODY") == [
        ("rejected", "override.pause", "sup-1: unknown account")
    ]
    assert [x[0] for x in await override_log(engine, "O-I1")] == ["rejected", "rejected"]
    assert "unknown campaign nope" in (await override_log(engine, "campaign:nope"))[0][2]
    assert "cannot apply to a whole campaign" in (await override_log(engine, "campaign:baseline"))[0][2]
    t = await active_timer(engine, "O-I1")
    assert t is not None and t["step"] == 2  # untouched


async def test_campaign_pause_holds_its_accounts_and_resume_wakes_them(engine) -> None:
    d = deps(NOON_NY)
    async with engine.begin() as c:
        await campaigns.create(
            c,
            CampaignIn(
                campaign_id="mx-pilot",
                name="Mexico pilot",
                owner="team-mx",
                criteria=Criteria(countries=["MX"]),
            ),
            d.clock.now(),
        )
        await campaigns.transition(c, "mx-pilot", CampaignStatus.ACTIVE, d.clock.now())
    mx = {"country": "MX", "region": None, "timezone": "America/Mexico_City"}
    await consume(engine, d, ov("campaign:mx-pilot", "pause", campaign_id="mx-pilot", reason="script review"))
    await consume(
        engine,
        d,
        account("O-M1", due_date=FIVE_DAYS_LATE, **mx),
        account("O-M2", due_date=FIVE_DAYS_LATE, **mx),
        account("O-M3", due_date=FIVE_DAYS_LATE),  # not in the campaign
    )
    await run_tick(engine, d)
    assert await steps_sent(engine, "O-M1") == [] and await steps_sent(engine, "O-M2") == []
    assert len(await steps_sent(engine, "O-M3")) == 2
    held = [r for r in await decisions(engine, "O-M1") if r["outcome"] == "deferred"]
    assert [(r["rule_id"], r["reason"]) for r in held] == [
        ("override.campaign_pause", "campaign mx-pilot paused by sup-1 (script review)")
    ]
    d.clock.advance(timedelta(hours=1))
    await consume(engine, d, ov("campaign:mx-pilot", "resume", campaign_id="mx-pilot", actor="sup-2"))
    log = await override_log(engine, "campaign:mx-pilot")
    assert [x[0] for x in log] == ["updated", "updated"]
    assert log[1][2] == "sup-2: campaign mx-pilot resumed; 2 waiting steps due now"
    await run_tick(engine, d)
    for a in ("O-M1", "O-M2"):
        assert {n["campaign_id"] for n in await notices(engine, a)} == {"mx-pilot"}
        assert len(await steps_sent(engine, a)) == 2
    async with engine.begin() as c:
        await campaigns.transition(c, "mx-pilot", CampaignStatus.COMPLETED, d.clock.now())


async def create_topic(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(Exception):  # it may exist already (the session's broker)
            await admin.create_topics([NewTopic(name, 1, 1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, records: list[tuple[Any, Any, Any]]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await p.start()
    try:
        for key, value, headers in records:
            await p.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await p.stop()


async def consume_all(bootstrap: str, topic: str, expect: int, within_s: float = 30.0) -> list[Any]:
    """Every record of `topic` once `expect` have arrived (and whatever follows within half a second)."""
    c = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await c.start()
    got: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + within_s
        while len(got) < expect and asyncio.get_running_loop().time() < deadline:
            for recs in (await c.getmany(timeout_ms=200)).values():
                got.extend(recs)
        for recs in (await c.getmany(timeout_ms=500)).values():
            got.extend(recs)
    finally:
        await c.stop()
    return got


async def test_overrides_through_the_broker_dedupe_by_ce_id_and_dead_letter_malformed(
    broker, segmenter_url
) -> None:
    tag = uuid.uuid4().hex[:8]
    group, aid = f"segmenter-ov-{tag}", f"O-RUN-{tag}"
    dlq = topics.dlq_topic(topics.OVERRIDES, group)
    for name in (topics.OVERRIDES, dlq):
        await create_topic(broker.bootstrap_servers, name)
    engine = make_engine(segmenter_url)
    d = await started(engine, aid)
    s = SegmenterSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=segmenter_url,
        runner_poll_timeout_ms=100,
        outbox_poll_s=0.02,
    )
    runner = StreamRunner(
        group=group,
        topics=topology.service("segmenter").consumes,
        handler=make_handler(d),
        engine=engine,
        schema=SCHEMA,
        settings=s,
        service="segmenter",
    )
    producer = make_producer(s, f"segmenter-ov-relay-{tag}")
    await producer.start()
    relay = OutboxRelay(engine=engine, schema=SCHEMA, producer=producer, settings=s, service="segmenter")
    tasks = [asyncio.create_task(runner.run()), asyncio.create_task(relay.run())]
    pause = encode(ov(aid, "pause", reason="by the broker"), source="escalation", id=f"override:{tag}")
    bad = encode(ov(aid, "resume"), source="escalation", id=f"override:{tag}-bad")
    try:
        await produce(
            broker.bootstrap_servers,
            topics.OVERRIDES,
            [
                (pause.key, pause.value, pause.headers),
                (pause.key, pause.value, pause.headers),  # redelivered: the inbox absorbs it
                (bad.key, b'{"account_id": "' + aid.encode() + b'", "action": "explode"}', bad.headers),
            ],
        )
        dead = await consume_all(broker.bootstrap_servers, dlq, expect=1)
        deadline = asyncio.get_running_loop().time() + 30
        while not await override_log(engine, aid):
            assert asyncio.get_running_loop().time() < deadline, "override never applied"
            await asyncio.sleep(0.1)
    finally:
        runner.stop()
        relay.stop()
        for t in tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(t, 10)
        await producer.stop()
    try:
        assert await override_log(engine, aid) == [
            ("updated", "override.pause", "sup-1: paused until resumed (by the broker)")
        ]
        assert await active_timer(engine, aid) is None
        assert len(dead) == 1
        h = header_map(dead[0].headers)
        assert h["ce_id"] == f"override:{tag}-bad" and h[dl.ORIGINAL_TOPIC] == topics.OVERRIDES
        assert h[dl.EXCEPTION_FQCN] == "arrears_shared.cloudevents.InvalidEvent"
    finally:
        await engine.dispose()
