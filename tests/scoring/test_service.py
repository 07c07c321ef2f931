"""The scoring service on a real broker and PostgreSQL: it folds the topics it consumes into its own
history (a balance that went down is a payment), trains on request (admins and automation only), and a
day's run publishes one `account-scored` per open account, under `score:<account>:<day>`, once; who may read
scores and models, and who may train and run, follows the role matrix."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from arrears_scoring.__main__ import definition
from arrears_scoring.settings import ScoringSettings
from arrears_shared import topics
from arrears_shared.cloudevents import encode, header_map
from arrears_shared.events import (
    AccountChanged,
    AccountScored,
    DeliveryStatus,
    Intent,
    LinkClicked,
    MessageSent,
    OverrideRequested,
    ReplyReceived,
    Tier,
)
from arrears_shared.service import ServiceHost
from auth_support import bearer, issue_key_async
from sqlalchemy import text

RUN = uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
async def scoring(
    broker: Any, fresh_database_url: Callable[..., str]
) -> AsyncIterator[tuple[ServiceHost, Any]]:
    settings = ScoringSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=fresh_database_url("scoring_svc"),
        runner_poll_timeout_ms=100,
        outbox_poll_s=0.02,
        scoring_start_delay_s=3600,  # the test drives training and runs through the API
    )
    host = ServiceHost(definition(settings))
    app = host.build_app()
    await host.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://scoring") as client:
        yield host, client
    await host.stop()


@pytest.fixture(scope="module")
async def keys(scoring: tuple[ServiceHost, Any]) -> dict[str, str]:
    host, _ = scoring
    assert host.ctx is not None
    async with host.ctx.engine.begin() as conn:
        return {
            r: await issue_key_async(conn, r)
            for r in ("viewer", "collector", "supervisor", "admin", "service")
        }


def account(acc: str, balance: int, as_of: datetime, change: str = "created") -> AccountChanged:
    return AccountChanged(
        account_id=acc,
        change=change,  # type: ignore[arg-type]
        source="sheet",
        customer_name="Ana Diaz",
        phone="+14155550123",
        email="ana@example.com",
        balance_minor=balance,
        currency="USD",
        due_date=date(2026, 9, 1),
        timezone="America/New_York",
        sms_consent=True,
        email_consent=False,
        content_hash=uuid.uuid4().hex,
        as_of=as_of,
    )


async def publish(bootstrap: str, events: list[Any]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await p.start()
    try:
        for ev in events:
            rec = encode(ev, source="test")
            await p.send_and_wait(rec.topic, rec.value, key=rec.key, headers=rec.headers)
    finally:
        await p.stop()


async def until(host: ServiceHost, sql: str, want: Callable[[Any], bool], **params: Any) -> Any:
    assert host.ctx is not None
    deadline = time.monotonic() + 30
    while True:
        async with host.ctx.engine.connect() as c:
            got = (await c.execute(text(sql), params)).all()
        if want(got) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.1)


async def test_history_is_folded_from_the_consumed_topics(scoring: Any, broker: Any) -> None:
    host, _ = scoring
    acc = f"HIST-{RUN}"
    t0 = datetime.now(UTC) - timedelta(days=10)
    sent = t0 + timedelta(days=1, hours=3)
    await publish(
        broker.bootstrap_servers,
        [
            account(acc, 50_000, t0),
            MessageSent(
                account_id=acc,
                notice_id=f"{acc}:n1",
                channel="sms",
                status=DeliveryStatus.SENT,
                provider="quo",
                to="+14155550123",
                tier=Tier.REMINDER,
                step=1,
                sent_at=sent.replace(hour=18, minute=0),
                timezone="America/New_York",
            ),
            ReplyReceived(
                account_id=acc,
                reply_id=f"{acc}:r1",
                channel="sms",
                from_address="+14155550123",
                text="I will pay on the 20th",
                intent=Intent.PROMISE_TO_PAY,
                confidence=0.9,
                promise_date=date(2026, 12, 20),
                received_at=sent + timedelta(hours=1),
            ),
            LinkClicked(
                account_id=acc,
                notice_id=f"{acc}:n1",
                channel="sms",
                issued_at=sent,
                clicked_at=sent + timedelta(minutes=5),
            ),
            OverrideRequested(
                account_id=acc,
                override_id=f"{acc}:o1",
                action="mark_dispute",
                actor="cora",
                role="collector",
                requested_at=sent + timedelta(hours=2),
            ),
            account(acc, 20_000, t0 + timedelta(days=3), change="payment"),
        ],
    )
    pays = await until(host, "SELECT amount_minor FROM scoring.payments WHERE account_id = :a", bool, a=acc)
    assert [r.amount_minor for r in pays] == [30_000]
    async with host.ctx.engine.connect() as c:  # type: ignore[union-attr]
        msg = (
            await c.execute(text("SELECT local_hour FROM scoring.messages WHERE account_id = :a"), {"a": acc})
        ).one()
        rep = (
            await c.execute(
                text("SELECT intent, promise_date FROM scoring.replies WHERE account_id = :a"), {"a": acc}
            )
        ).one()
        n_snap = (
            await c.execute(text("SELECT count(*) FROM scoring.snapshots WHERE account_id = :a"), {"a": acc})
        ).scalar()
        ovr = (
            await c.execute(text("SELECT action FROM scoring.overrides WHERE account_id = :a"), {"a": acc})
        ).scalar()
        clk = (
            await c.execute(text("SELECT count(*) FROM scoring.clicks WHERE account_id = :a"), {"a": acc})
        ).scalar()
    assert msg.local_hour == sent.replace(hour=18, minute=0).astimezone(ZoneInfo("America/New_York")).hour
    assert (rep.intent, rep.promise_date) == ("promise_to_pay", date(2026, 12, 20))
    assert (n_snap, ovr, clk) == (2, "mark_dispute", 1)


async def test_roles_train_run_and_publish_once(scoring: Any, broker: Any, keys: dict[str, str]) -> None:
    host, client = scoring
    accounts = [f"PUB-{RUN}-{i}" for i in range(3)]
    yesterday = datetime.now(UTC) - timedelta(days=1)
    await publish(
        broker.bootstrap_servers, [account(a, 10_000 * (i + 1), yesterday) for i, a in enumerate(accounts)]
    )
    await until(
        host,
        "SELECT 1 FROM scoring.snapshots WHERE account_id = ANY(:a)",
        lambda rows: len(rows) == 3,
        a=accounts,
    )
    # nobody without scoring.run trains or runs; the viewer sees model metrics, not an account's score
    for role in ("viewer", "collector", "supervisor"):
        r = await client.post(
            "/models/train", json={"source": "simulated", "accounts": 400}, headers=bearer(keys[role])
        )
        assert r.status_code == 403, (role, r.text)
        r = await client.post("/scoring/run", json={}, headers=bearer(keys[role]))
        assert r.status_code == 403, (role, r.text)
    assert (await client.post("/models/train", json={"source": "simulated"})).status_code == 401
    r = await client.post("/scoring/run", json={}, headers=bearer(keys["admin"]))
    assert r.status_code == 409 and "train first" in r.text
    # simulated customers are a demo: refused unless the demo model is switched on
    host.s.scoring_demo_model = False  # type: ignore[attr-defined]
    r = await client.post("/models/train", json={"source": "simulated"}, headers=bearer(keys["admin"]))
    assert r.status_code == 409 and "demos" in r.text
    host.s.scoring_demo_model = True  # type: ignore[attr-defined]
    r = await client.post(
        "/models/train",
        json={"source": "simulated", "accounts": 1500, "seed": 3},
        headers=bearer(keys["admin"]),
    )
    assert r.status_code == 200, r.text
    made = r.json()
    assert {m["kind"] for m in made} == {"pay14", "dropout", "recovery"} and all(m["active"] for m in made)
    assert all(m["source"] == "simulated" for m in made)
    models = await client.get("/models", headers=bearer(keys["viewer"]))
    assert models.status_code == 200, models.text
    pay14 = next(m for m in models.json() if m["kind"] == "pay14")
    assert {"auc", "brier", "calibration"} <= set(pay14["metrics"]) and pay14["metrics"]["auc"] > 0.6
    # the service role (a scheduler) may run the day
    r = await client.post("/scoring/run", json={}, headers=bearer(keys["service"]))
    assert r.status_code == 200 and r.json()["ran"] and r.json()["published"] >= 3, r.text
    again = await client.post("/scoring/run", json={}, headers=bearer(keys["admin"]))
    assert again.status_code == 200 and not again.json()["ran"] and again.json()["published"] == 0
    today = datetime.now(UTC).date().isoformat()
    found = await scored(broker.bootstrap_servers, set(accounts))
    assert sorted(found) == sorted(f"score:{a}:{today}" for a in accounts)  # once each, under its id
    for ce_id, ev in found.items():
        assert isinstance(ev, AccountScored) and ce_id.endswith(ev.scored_on.isoformat())
        assert ev.best_channel == "sms"  # the only channel with consent
    assert (await client.get(f"/scores/{accounts[0]}", headers=bearer(keys["viewer"]))).status_code == 403
    r = await client.get(f"/scores/{accounts[0]}", headers=bearer(keys["collector"]))
    assert r.status_code == 200, r.text
    latest = r.json()["latest"]
    assert latest["scored_on"] == today and latest["band"] in ("low", "medium", "high")
    assert all(x["label"] and x["feature"] for x in latest["reasons"])
    assert (await client.get("/scores/NOBODY", headers=bearer(keys["collector"]))).status_code == 404
    audit = await until(
        host,
        "SELECT action FROM scoring.audit_log WHERE action IN ('models.train', 'scoring.run')",
        lambda rows: len(rows) >= 3,
    )
    assert {r.action for r in audit} == {"models.train", "scoring.run"}
    # every replica reports the latest committed run from the database (the missed-run alert's input)
    from arrears_scoring import metrics
    from arrears_scoring.jobs.scheduled import report_last_run
    from prometheus_client import REGISTRY

    assert host.ctx is not None
    metrics.LAST_RUN.set(0)  # as on a replica that did not run the day itself
    await report_last_run(host.ctx)
    (finished,) = (await until(host, "SELECT max(finished_at) AS f FROM scoring.runs", lambda rows: True))[0]
    assert REGISTRY.get_sample_value("arrears_scoring_last_run_timestamp_seconds") == finished.timestamp()


async def scored(bootstrap: str, accounts: set[str]) -> dict[str, AccountScored]:
    c = AIOKafkaConsumer(
        topics.ACCOUNT_SCORED,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await c.start()
    found: dict[str, AccountScored] = {}
    count = 0
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for recs in (await c.getmany(timeout_ms=300)).values():
                for r in recs:
                    h = header_map(r.headers)
                    if h.get("ce_subject") in accounts:
                        count += 1
                        found[h["ce_id"]] = AccountScored.model_validate_json(r.value)
            if len(found) >= len(accounts):
                await asyncio.sleep(1.0)
                for recs in (await c.getmany(timeout_ms=500)).values():
                    count += sum(1 for r in recs if header_map(r.headers).get("ce_subject") in accounts)
                break
    finally:
        await c.stop()
    assert count == len(found), f"{count} records for {len(found)} ids: a score was published twice"
    return found
