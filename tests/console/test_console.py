"""console: read models fed through the real service host (StreamRunner, real broker, real Postgres), the
JSON API and page, the DLQ view, and the batch handler's throughput at the function level."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from arrears_console.__main__ import definition
from arrears_console.dlq.reader import mask_pii, store
from arrears_console.readmodels.handlers import handle_events
from arrears_console.settings import ConsoleSettings
from arrears_shared import topics
from arrears_shared.auth.masking import mask_name
from arrears_shared.cloudevents import decode, encode
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.events import (
    AccountChanged,
    AccountScored,
    AgingBucket,
    CaseEscalated,
    DeliveryStatus,
    Event,
    IngestRejected,
    Intent,
    LinkClicked,
    MessageSent,
    NoticeDue,
    OverrideRequested,
    ReplyReceived,
    RiskBand,
    Tier,
)
from arrears_shared.service import ServiceHost
from arrears_shared.stream.dead_letter import Failure, dead_letter
from arrears_shared.stream.transaction import Transaction
from auth_support import bearer, issue_key_async
from sqlalchemy import text

CUR = "XTS"  # ISO 4217 "code reserved for testing": no other test's accounts land in these rows
TODAY = datetime.now(UTC).date()
NOW = datetime.now(UTC)


def account(
    acc: str, balance: int, dpd: int, *, as_of: datetime = NOW, change: str = "created"
) -> AccountChanged:
    return AccountChanged(
        account_id=acc, change=change, source="sheet", source_row=2, customer_name=f"Name {acc}",
        phone="+14155550123", email="x@example.com", balance_minor=balance, currency=CUR,
        due_date=TODAY - timedelta(days=dpd), timezone="America/New_York", sms_consent=True,
        content_hash=f"h-{acc}-{balance}", as_of=as_of,
    )  # fmt: skip


def others(acc: str) -> list[Event]:
    return [
        NoticeDue(
            account_id=acc, notice_id=f"n-{acc}", policy_id="default", policy_version=1, step=1, tier=Tier.FIRM,
            channel="sms", template_id="t", to="+14155550123", customer_name="n", balance_minor=1000,
            currency=CUR, days_past_due=45, aging_bucket=AgingBucket.D31_60, timezone=None, due_at=NOW,
        ),
        MessageSent(
            account_id=acc, notice_id=f"n-{acc}", channel="sms", status=DeliveryStatus.SENT, provider="quo",
            to="+14155550123", tier=Tier.FIRM, step=1, sent_at=NOW,
        ),
        ReplyReceived(
            account_id=acc, reply_id=f"r-{acc}", channel="sms", from_address="+14155550123",
            text="STOP", intent=Intent.OPT_OUT, confidence=1.0, received_at=NOW + timedelta(seconds=1),
        ),
        CaseEscalated(
            account_id=acc, case_id=f"c-{acc}", reason="dispute", priority="high", opened_at=NOW + timedelta(seconds=2),
        ),
        IngestRejected(
            account_id=acc, source="sheet", batch_id="b1", row_number=7, column="Balance", value="abc",
            reason="not a number", rejected_at=NOW,
        ),
        OverrideRequested(
            account_id=acc, override_id=f"o-{acc}", action="pause", reason="travelling", actor="ana",
            role="collector", requested_at=NOW + timedelta(seconds=3),
        ),
        LinkClicked(
            account_id=acc, notice_id=f"n-{acc}", channel="sms", tier=Tier.FIRM, issued_at=NOW,
            clicked_at=NOW + timedelta(seconds=4),
        ),
        AccountScored(
            account_id=acc, scored_on=TODAY, model_version="m1", risk_score=70, band=RiskBand.HIGH, p_pay_14d=0.2,
            dropout_risk=0.5, expected_recovery=0.4, expected_recovery_minor=400, currency=CUR, scored_at=NOW,
        ),
    ]  # fmt: skip


async def produce(bootstrap: str, items: list[tuple[Event, str]]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await p.start()
    try:
        for ev, ce_id in items:
            rec = encode(ev, source="test", id=ce_id)
            await p.send(rec.topic, rec.value, key=rec.key, headers=rec.headers)
        await p.flush()
    finally:
        await p.stop()


async def eventually(check: Callable[[], Any], within_s: float = 30.0) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        try:
            result = await check()
            if result:
                return result
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
async def console_service(
    broker: Any, fresh_database_url: Callable[..., str]
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """The console's service host and an API key per role; the client sends no credential by itself."""
    settings = ConsoleSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=fresh_database_url("console"),
        runner_poll_timeout_ms=100,
        runner_retry_attempts=1,
        outbox_poll_s=0.02,
    )
    host = ServiceHost(definition(settings))
    app = host.build_app()
    await host.start()
    assert host.ctx is not None
    async with host.ctx.engine.begin() as conn:
        keys = {role: await issue_key_async(conn, role) for role in ("viewer", "collector", "supervisor")}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as client:
        yield client, keys
    await host.stop()


@pytest.fixture
def console(console_service: tuple[httpx.AsyncClient, dict[str, str]]) -> Iterator[httpx.AsyncClient]:
    """The console as a supervisor sees it (timelines, dead letters, ingest rejects)."""
    client, keys = console_service
    client.headers.update(bearer(keys["supervisor"]))
    try:
        yield client
    finally:
        client.headers.pop("Authorization", None)


async def test_aging_accounts_timeline_and_summary_through_the_broker(
    console: httpx.AsyncClient, broker
) -> None:
    run = uuid.uuid4().hex[:6]
    a_cur, a_45, a_100, a_200 = (f"CON-{run}-{k}" for k in ("cur", "45", "100", "200"))
    items: list[tuple[Event, str]] = [
        (account(a_cur, 10_000, -3), f"{run}-1"),
        (account(a_45, 25_050, 45), f"{run}-2"),
        (account(a_100, 5_000, 100), f"{run}-3"),
        (account(a_200, 70_000, 200), f"{run}-4"),
        # a newer update of a_45 and an older, late-arriving one that must not win
        (account(a_45, 30_000, 45, as_of=NOW + timedelta(minutes=1), change="updated"), f"{run}-5"),
        (account(a_45, 1, 45, as_of=NOW - timedelta(minutes=1), change="updated"), f"{run}-6"),
        *((ev, f"{run}-o{i}") for i, ev in enumerate(others(a_45))),
        (account(a_cur, 10_000, -3), f"{run}-1"),  # a redelivered event (same ce_id): applied once
    ]
    await produce(broker.bootstrap_servers, items)

    async def timeline_complete() -> Any:
        r = (await console.get(f"/api/accounts/{a_45}/timeline")).json()
        return r if len(r["items"]) == 3 + len(others(a_45)) else None

    tl = await eventually(timeline_complete)
    topics_seen = sorted(i["topic"] for i in tl["items"])
    # every topic about accounts (team-calendars is keyed by team, not account)
    about_accounts = [t for t in topics.EVENT_TOPICS[1:] if t != topics.TEAM_CALENDARS]
    assert topics_seen == sorted(["account-changed"] * 3 + about_accounts)
    joined = " | ".join(i["summary"] for i in tl["items"])
    assert "+1415" not in joined and "example.com" not in joined and "STOP" not in joined  # no contact PII
    assert "opt_out" in joined and "case opened: dispute (high)" in joined
    assert "override pause by ana (collector): travelling" in joined

    async def all_accounts() -> Any:
        r = (await console.get("/api/accounts", params={"q": f"CON-{run}"})).json()
        return r if r["count"] == 4 else None

    listed = await eventually(all_accounts)
    by_id = {a["account_id"]: a for a in listed["items"]}
    assert by_id[a_45]["balance_minor"] == 30_000 and by_id[a_45]["days_past_due"] == 45
    assert by_id[a_45]["bucket"] == "31-60" and by_id[a_45]["opt_outs"] == ["sms"]
    assert by_id[a_cur]["bucket"] == "current" and by_id[a_cur]["days_past_due"] == 0
    assert by_id[a_100]["bucket"] == "91-120" and by_id[a_200]["bucket"] == "120+"
    assert [a["account_id"] for a in listed["items"]] == [a_200, a_100, a_45, a_cur]  # most overdue first

    only = (await console.get("/api/accounts", params={"bucket": "120+", "q": f"CON-{run}"})).json()
    assert [a["account_id"] for a in only["items"]] == [a_200]
    assert (await console.get("/api/accounts", params={"bucket": "bogus"})).status_code == 422

    aging = (await console.get("/api/aging")).json()
    rows = {r["bucket"]: r for r in aging["rows"] if r["currency"] == CUR}
    assert rows["current"]["balance_minor"] >= 10_000 and rows["31-60"]["balance_minor"] >= 30_000
    assert rows["91-120"]["accounts"] >= 1 and rows["120+"]["balance_minor"] >= 70_000
    # aging is computed at read time: 30 days later the 45-dpd account has moved to 61-90
    later = (
        await console.get("/api/aging", params={"as_of": (TODAY + timedelta(days=30)).isoformat()})
    ).json()
    later_rows = {r["bucket"]: r for r in later["rows"] if r["currency"] == CUR}
    assert later_rows["61-90"]["balance_minor"] >= 30_000

    s = (await console.get("/api/summary")).json()
    assert s["events_per_topic"]["account-changed"] >= 6 and s["notices_due"] >= 1
    assert s["messages_by_channel"]["sms"]["sent"] >= 1 and s["replies_by_intent"]["opt_out"] >= 1
    assert s["open_cases"] >= 1 and s["rejects"] >= 1
    rej = (await console.get("/api/rejects")).json()
    assert any(r["account_id"] == a_45 and r["column"] == "Balance" for r in rej["items"])

    page = await console.get("/")
    assert page.status_code == 200 and "Aging report" in page.text and 'data-poll="' in page.text  # live
    assert "XTS" in page.text and '<script src="/static/app.js" defer></script>' in page.text
    assert page.text.count("<script") == 1  # no inline script: values never become code


async def test_dead_lettered_record_shows_in_the_dlq_view(console: httpx.AsyncClient, broker) -> None:
    """A poison record on `case-escalated` (consumed only by the console) is dead-lettered by the console's
    own StreamRunner; the DLQ reader then lists it with its Spring-style metadata."""
    ce_id = f"poison-{uuid.uuid4().hex[:8]}"
    p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    await p.start()
    try:
        headers = [("ce_specversion", b"1.0"), ("ce_id", ce_id.encode()), ("ce_source", b"test"),
                   ("ce_type", b"arrears.case.escalated.v1"), ("content-type", b"application/json")]  # fmt: skip
        await p.send_and_wait(
            topics.CASE_ESCALATED, b'{"account_id": "x", "email": "a@b.co"}', key=b"x", headers=headers
        )
    finally:
        await p.stop()

    async def listed() -> Any:
        r = (await console.get("/api/dlq", params={"topic": "case-escalated.console.dlq"})).json()
        return next((i for i in r["items"] if i["ce_id"] == ce_id), None)

    item = await eventually(listed)
    assert item["original_topic"] == topics.CASE_ESCALATED and item["consumer_group"] == "console"
    assert item["service"] == "console" and item["attempts"] == 1 and "InvalidEvent" in item["reason"]
    assert "a@b.co" not in str(item)
    assert (await console.get("/api/summary")).json()["dlq"] >= 1


async def test_accounts_mask_names_for_a_viewer_and_show_them_to_a_collector(console_service, broker) -> None:
    client, keys = console_service
    run = uuid.uuid4().hex[:6]
    acc = f"MASK-{run}"
    name = f"Maria del Carmen Lopez {run}"
    await produce(
        broker.bootstrap_servers,
        [(account(acc, 12_345, 40).model_copy(update={"customer_name": name}), f"m-{run}")],
    )
    viewer, collector = bearer(keys["viewer"]), bearer(keys["collector"])
    assert (await client.get("/api/accounts", params={"q": acc})).status_code == 401

    async def seen_by_collector() -> Any:
        r = await client.get("/api/accounts", params={"q": acc}, headers=collector)
        assert r.status_code == 200, r.text
        return r.json()["items"] or None

    [clear] = await eventually(seen_by_collector)
    assert clear["customer_name"] == name
    r = await client.get("/api/accounts", params={"q": acc}, headers=viewer)
    assert r.status_code == 200, r.text
    [masked] = r.json()["items"]
    assert masked["customer_name"] == mask_name(name) == f"M. d. C. L. {run[0]}."
    assert masked["balance_minor"] == 12_345 and masked["bucket"] == "31-60"  # the aggregates stay
    assert "Maria" not in r.text and "Lopez" not in r.text
    # a viewer cannot find accounts by name either (that would reveal it), nor open a timeline
    by_name = await client.get("/api/accounts", params={"q": "Carmen Lopez"}, headers=viewer)
    assert by_name.status_code == 200 and acc not in by_name.text
    found = await client.get("/api/accounts", params={"q": f"Carmen Lopez {run}"}, headers=collector)
    assert [a["account_id"] for a in found.json()["items"]] == [acc]
    assert (await client.get(f"/api/accounts/{acc}/timeline", headers=viewer)).status_code == 403
    assert (await client.get(f"/api/accounts/{acc}/timeline", headers=collector)).status_code == 200
    for path in ("/api/timeline", "/api/dlq", "/api/rejects"):
        assert (await client.get(path, headers=viewer)).status_code == 403, path
    assert (await client.get("/api/dlq", headers=collector)).status_code == 403
    assert (await client.get("/api/aging", headers=viewer)).status_code == 200


async def test_page_leaves_out_what_the_role_may_not_see(console_service) -> None:
    client, keys = console_service
    html = {"Accept": "text/html"}
    anonymous = await client.get("/", headers=html)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"
    assert (await client.get("/")).status_code == 401
    sections = ("Recent activity", "Dead letters", "Ingest rejects")
    expected = {
        "viewer": (),
        "collector": ("Recent activity",),
        "supervisor": sections,
    }
    for role, visible in expected.items():
        page = await client.get("/", headers=html | bearer(keys[role]))
        assert page.status_code == 200, (role, page.text)
        assert "Aging report" in page.text and "Sends by channel" in page.text, role
        shown = tuple(h for h in sections if f"<h2>{h}" in page.text)
        assert shown == visible, (role, shown)


async def test_dlq_store_is_idempotent_and_masks_pii(fresh_database_url) -> None:
    url = fresh_database_url("console_dlq")
    await asyncio.to_thread(upgrade, url, "console")
    rec = ConsumerRecord(
        topic=topics.NOTICE_DUE, partition=0, offset=41, timestamp=0, timestamp_type=0, key=b"A1",
        value=b"{}", checksum=None, serialized_key_size=2, serialized_value_size=2,
        headers=[("ce_id", b"e1"), ("ce_type", b"arrears.notice.due.v1")],
    )  # fmt: skip
    out = dead_letter(
        Failure(rec, ValueError("no route to +1 415 555 0100 / bob@example.com"), 5), group="dispatcher-sms"
    )
    dlq_rec = ConsumerRecord(
        topic=out.topic, partition=2, offset=7, timestamp=0, timestamp_type=0, key=out.key, value=out.value,
        checksum=None, serialized_key_size=2, serialized_value_size=2, headers=out.headers,
    )  # fmt: skip
    engine = make_engine(url)
    try:
        for expected in (1, 0):
            async with engine.begin() as c:
                assert await store(c, "console", [dlq_rec]) == expected
        async with engine.connect() as c:
            row = (await c.execute(text("SELECT * FROM console.dlq"))).one()
    finally:
        await engine.dispose()
    assert row.topic == "notice-due.dispatcher-sms.dlq" and row.original_offset == 41 and row.attempts == 5
    assert row.service == "dispatcher-sms" and row.ce_id == "e1" and row.account_id == "A1"
    assert "bob@example.com" not in row.reason and "555" not in row.reason and "ValueError" in row.reason
    assert mask_pii("call +14155550100") == "call ***"


async def test_batch_handler_applies_large_mixed_batches_completely(fresh_database_url) -> None:
    """Half AccountChanged (the most expensive upsert), half the other five types, in runner-sized batches:
    every event lands in the read models. (Throughput is measured by `make bench-backbone`, not asserted.)"""
    url = fresh_database_url("console_perf")
    await asyncio.to_thread(upgrade, url, "console")
    n, rates = 10_000, []
    engine = make_engine(url)
    try:
        for attempt in range(1):
            events = []
            for i in range(n):
                acc = f"P{attempt}-{i - i % 2:05d}"
                ev: Event = account(acc, 1000 + i, i % 150) if i % 2 == 0 else others(acc)[i % 5]
                rec = encode(ev, source="test", id=f"perf-{attempt}-{i}")
                events.append(decode(rec.headers, rec.value))
            started = time.perf_counter()
            for chunk in range(0, n, 2000):  # the runner's default max batch
                async with engine.begin() as conn:
                    await handle_events(events[chunk : chunk + 2000], Transaction(conn, "console", "console"))
            rates.append(n / (time.perf_counter() - started))
        async with engine.connect() as c:
            assert (await c.execute(text("SELECT count(*) FROM console.timeline"))).scalar() == n * len(rates)
            assert (await c.execute(text("SELECT count(*) FROM console.accounts"))).scalar() == n // 2 * len(
                rates
            )
            total = await c.execute(
                text("SELECT n FROM console.counters WHERE dim = '' AND topic = 'account-changed'")
            )
            assert total.scalar() == n // 2 * len(rates)
    finally:
        await engine.dispose()
    print(f"\nconsole handler: {', '.join(f'{r:,.0f}' for r in rates)} events/s")
