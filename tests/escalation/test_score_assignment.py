"""Issue #20 item 3 (escalation side): a high model band assigns the account to the recovery team once per
band change (the seeds' daily model run: "IF risk_score > 70: flag HIGH_RISK, assign to recovery team"), and
the work list can be ordered by the model's expected recovery. The service host's own consumer reads the
scores from the real broker; PostgreSQL is real."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from arrears_escalation.__main__ import definition
from arrears_escalation.deps import Deps
from arrears_escalation.rules.service import Facts, load_rules, matching
from arrears_escalation.settings import EscalationSettings
from arrears_shared.clock import Clock
from arrears_shared.cloudevents import encode
from arrears_shared.events import AccountScored, RiskBand, ScoreReason
from arrears_shared.service import ServiceHost
from auth_support import bearer, issue_key_async
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .test_escalation import handle

T0 = datetime(2026, 5, 1, 14, tzinfo=UTC)


def scored(aid: str, day: int, band: RiskBand, recovery_minor: int = 10_000, **kw: Any) -> AccountScored:
    base: dict[str, Any] = {
        "account_id": aid,
        "scored_on": date(2026, 5, day),
        "model_version": "m-test-1",
        "risk_score": {"low": 20, "medium": 50, "high": 85}[band.value],
        "band": band,
        "p_pay_14d": 0.2,
        "dropout_risk": 0.6,
        "expected_recovery": 0.5,
        "expected_recovery_minor": recovery_minor,
        "currency": "USD",
        "reasons": [ScoreReason(feature="broken_promises", label="Broke 2 promises", contribution=20)],
        "scored_at": datetime(2026, 5, day, 5, tzinfo=UTC),
    }
    return AccountScored(**(base | kw))


async def recovery_tasks(engine: AsyncEngine, aid: str) -> Sequence[Any]:
    async with engine.connect() as c:
        return (
            await c.execute(
                text(
                    "SELECT kind, team, priority, status, rule_id, detail FROM escalation.tasks "
                    "WHERE account_id = :a AND kind = 'recovery_outreach' ORDER BY created_at"
                ),
                {"a": aid},
            )
        ).all()


def test_the_default_rule_matches_the_high_band_only() -> None:
    rules = load_rules()
    assert [r.id for r in matching(rules, "account_scored", Facts(band="high", risk_score=70))] == [
        "high_risk_score"
    ]
    assert matching(rules, "account_scored", Facts(band="medium", risk_score=60)) == []
    # the seeds' "> 70" as a tuned threshold
    tuned = load_rules(thresholds={"high_risk_score.min_risk_score": 71})
    assert matching(tuned, "account_scored", Facts(band="high", risk_score=70)) == []


async def test_a_high_band_makes_one_recovery_task_per_band_change(engine) -> None:
    d = Deps(clock=Clock(fixed=T0))
    await handle(engine, d, scored("RS-1", 1, RiskBand.MEDIUM))
    assert await recovery_tasks(engine, "RS-1") == []
    await handle(engine, d, scored("RS-1", 2, RiskBand.HIGH))
    await handle(engine, d, scored("RS-1", 3, RiskBand.HIGH))  # the next day, same band: no second task
    await handle(engine, d, scored("RS-1", 3, RiskBand.HIGH))  # a replay under another id
    await handle(engine, d, scored("RS-1", 1, RiskBand.LOW))  # a late older score: ignored
    tasks = await recovery_tasks(engine, "RS-1")
    assert [(t.team, t.priority, t.status, t.rule_id) for t in tasks] == [
        ("recovery", "high", "open", "high_risk_score")
    ]
    assert "risk 85 (high) since 2026-05-02" in tasks[0].detail and "Broke 2 promises" in tasks[0].detail
    # out of the high band and back in: a new band change, a new task
    await handle(engine, d, scored("RS-1", 4, RiskBand.MEDIUM))
    await handle(engine, d, scored("RS-1", 5, RiskBand.HIGH))
    tasks = await recovery_tasks(engine, "RS-1")
    assert len(tasks) == 2 and "since 2026-05-05" in tasks[1].detail
    async with engine.connect() as c:
        row = (
            await c.execute(
                text("SELECT band, band_since FROM escalation.account_scores WHERE account_id = 'RS-1'")
            )
        ).one()
    assert (row.band, row.band_since) == ("high", date(2026, 5, 5))


@pytest.fixture(scope="module")
async def host(broker: Any, escalation_url: str) -> AsyncIterator[tuple[ServiceHost, httpx.AsyncClient, str]]:
    settings = EscalationSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=escalation_url,
        runner_poll_timeout_ms=100,
        escalation_tick_s=3600,
    )
    deps = Deps.from_settings(settings)
    deps.clock = Clock(fixed=T0)
    h = ServiceHost(definition(settings, deps))
    app = h.build_app()
    await h.start()
    assert h.ctx is not None
    async with h.ctx.engine.begin() as conn:
        key = await issue_key_async(conn, "collector", name="collector-user")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://esc") as client:
        yield h, client, key
    await h.stop()


async def _wait(cond: Callable[[], Awaitable[bool]], what: str, limit_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not await cond():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_scores_from_the_broker_assign_and_order_the_work_list(broker, host, engine) -> None:
    _, client, key = host
    tag = uuid.uuid4().hex[:6]
    ids = {name: f"RS-{tag}-{name}" for name in ("big", "small", "eur", "plain")}
    p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    await p.start()
    try:
        for ev in (
            scored(ids["small"], 1, RiskBand.HIGH, recovery_minor=5_000),
            scored(ids["big"], 1, RiskBand.HIGH, recovery_minor=90_000),
            scored(ids["eur"], 1, RiskBand.HIGH, recovery_minor=40_000, currency="EUR"),
        ):
            rec = encode(ev, source="test", id=f"scored:{ev.account_id}")
            await p.send_and_wait(rec.topic, value=rec.value, key=rec.key, headers=rec.headers)
    finally:
        await p.stop()

    async def assigned() -> bool:
        return all([len(await recovery_tasks(engine, ids[n])) == 1 for n in ("big", "small", "eur")])

    await _wait(assigned, "the recovery team's tasks")
    # an account without a score, with a task of its own team: last in the expected-recovery order
    await handle(engine, Deps(clock=Clock(fixed=T0)), scored(ids["plain"], 1, RiskBand.LOW))
    async with engine.begin() as c:
        await c.execute(
            text("DELETE FROM escalation.account_scores WHERE account_id = :a"), {"a": ids["plain"]}
        )
        await c.execute(
            text(
                "INSERT INTO escalation.tasks (task_id, account_id, kind, priority, team, status, due_at, "
                "sla_due_at, sla_state, detail, created_at) VALUES (:t, :a, 'recovery_outreach', 'high', "
                "'recovery', 'open', :now, :now, 'ok', 'no score', :now)"
            ),
            {"t": f"t-{tag}", "a": ids["plain"], "now": T0},
        )
    r = await client.get(
        "/tasks",
        params={"team": "recovery", "status": "open", "sort": "expected_recovery", "limit": 2},
        headers=bearer(key),
    )
    assert r.status_code == 200, r.text
    walked = r.json()
    while "X-Next-Cursor" in r.headers:
        r = await client.get(
            "/tasks",
            params={
                "team": "recovery",
                "status": "open",
                "sort": "expected_recovery",
                "limit": 2,
                "cursor": r.headers["X-Next-Cursor"],
            },
            headers=bearer(key),
        )
        walked += r.json()
    mine = [t for t in walked if t["account_id"] in ids.values()]
    # EUR 400.00 is worth more than USD 50.00 and less than USD 900.00 in the reporting currency
    assert [t["account_id"] for t in mine] == [ids["big"], ids["eur"], ids["small"], ids["plain"]]
    assert (
        mine[0]["risk_band"],
        mine[0]["expected_recovery_minor"],
        mine[0]["expected_recovery_currency"],
    ) == (
        "high",
        90_000,
        "USD",
    )
    assert mine[-1]["expected_recovery_minor"] is None
