"""A debtor's contact preferences set in the portal change the segmenter's next step, end to end on the real
broker and Postgres: the portal (its own service and database) publishes `set_channel_preference` with the
debtor's quiet times on `overrides`; the segmenter's production handler (through the stream runner) stores
them, re-arms the next step at the first moment inside both the legal window and the debtor's, and when it
fires sends it on the debtor's channel only; the notice carries the window for the dispatchers' gate.

A Spanish-locale account (a country of `ARREARS_SEGMENTER_LOCALES_BY_COUNTRY`) gets its dunning notices with
`locale: es`, so the email dispatcher renders the Spanish template with the personal link."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from email import message_from_bytes, policy
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from arrears_dispatcher_email.channel import EmailChannel
from arrears_dispatcher_email.settings import EmailSettings
from arrears_portal.__main__ import definition as portal_definition
from arrears_segmenter.consumer import make_handler
from arrears_segmenter.settings import SegmenterSettings
from arrears_shared import links, topics
from arrears_shared.cloudevents import encode
from arrears_shared.contact_window import ContactWindow
from arrears_shared.db.engine import make_engine
from arrears_shared.events import Event, NoticeDue, Tier
from arrears_shared.links import LinkClaims, LinkSigner
from arrears_shared.service import ServiceHost
from arrears_shared.stream.runner import StreamRunner
from portal_support import hosted, portal_settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .support import account, decisions, deps, notices, run_tick, timers

KEY = "debtor-preferences-link-key-0123456789abc"
NY = ZoneInfo("America/New_York")
# Thursday 2026-03-05 12:00 in New York: step 1 (1 day past due) is due now, inside the legal window
NOW = datetime(2026, 3, 5, 12, 0, tzinfo=NY).astimezone(UTC)
SUBSCRIBED = [topics.ACCOUNT_CHANGED, topics.OVERRIDES]


@pytest.fixture(scope="module")
async def portal(
    broker: Any, fresh_database_url: Callable[..., str]
) -> AsyncIterator[tuple[ServiceHost, Any]]:
    settings = portal_settings(broker, fresh_database_url("portal"), KEY)
    async with hosted(portal_definition(settings)) as (host, client, _):
        yield host, client


@contextlib.asynccontextmanager
async def segmenter(bootstrap: str, url: str) -> AsyncIterator[AsyncEngine]:
    """The segmenter's production handler on `account-changed` and `overrides` through the stream runner,
    its clock fixed at NOW (a group of its own, so records other tests left cannot stall it)."""
    group = f"segmenter-prefs-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for t in SUBSCRIBED:
            with contextlib.suppress(Exception):
                await admin.create_topics([NewTopic(topics.dlq_topic(t, group), 1, 1)])
    finally:
        await admin.close()
    s = SegmenterSettings(kafka_bootstrap_servers=bootstrap, database_url=url, runner_poll_timeout_ms=100)
    engine = make_engine(url)
    runner = StreamRunner(
        group=group,
        topics=SUBSCRIBED,
        handler=make_handler(deps(NOW)),
        engine=engine,
        schema="segmenter",
        settings=s,
        service="segmenter",
    )
    task = asyncio.create_task(runner.run())
    try:
        yield engine
    finally:
        runner.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await engine.dispose()


async def produce(bootstrap: str, *events: Event) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await p.start()
    try:
        for ev in events:
            rec = encode(ev, source="test", id=f"test:{uuid.uuid4().hex}")
            await p.send_and_wait(rec.topic, rec.value, key=rec.key, headers=rec.headers)
    finally:
        await p.stop()


async def wait_for(cond: Callable[[], Awaitable[bool]], what: str, limit_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not await cond():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def token(account_id: str) -> str:
    now = datetime.now(UTC).replace(microsecond=0)
    claims = LinkClaims(
        notice_id=f"{account_id}:default:v1:s1:c0:sms",
        account_id=account_id,
        channel="sms",
        tier=Tier.REMINDER,
        issued_at=now,
        expires_at=now + timedelta(days=30),
    )
    return LinkSigner(KEY).mint(claims)


async def portal_knows(host: ServiceHost, account_id: str) -> bool:
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        n = (
            await c.execute(
                text("SELECT count(*) FROM portal.accounts WHERE account_id = :a"), {"a": account_id}
            )
        ).scalar_one()
    return bool(n)


async def pending_due(engine: AsyncEngine, account_id: str) -> datetime | None:
    pending = [t for t in await timers(engine, account_id) if t["state"] == "pending"]
    return pending[0]["due_at"] if pending else None


async def test_preferences_set_in_the_portal_change_the_next_steps_channel_and_time(
    portal: Any, broker: Any, segmenter_url: str
) -> None:
    host, client = portal
    acc = f"PREF-{uuid.uuid4().hex[:8]}"
    async with segmenter(broker.bootstrap_servers, segmenter_url) as engine:
        await produce(broker.bootstrap_servers, account(acc, due_date=date(2026, 3, 1)))

        async def both_know() -> bool:
            return await portal_knows(host, acc) and await pending_due(engine, acc) is not None

        await wait_for(both_know, "the account in the portal and the segmenter", 90)
        assert await pending_due(engine, acc) == NOW  # step 1 is due now, on the policy's sms and email

        # the debtor: email only, not before 14:00, not after 18:00, never on Thursdays
        client.cookies.clear()
        r = await client.post(f"/p/{token(acc)}", data={"digits": "0100", "lang": "en"})
        assert r.status_code == 303, r.text
        page = (await client.get("/portal/account")).text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf
        r = await client.post(
            "/portal/account/preferences",
            data={
                "csrf": csrf.group(1),
                "channel": ["email", ""],
                "not_before": "14:00",
                "not_after": "18:00",
                "avoid": ["4"],
            },
        )
        assert r.status_code == 303 and r.headers["location"] == "/portal/account?done=preferences", r.text

        friday_2pm = datetime(2026, 3, 6, 14, 0, tzinfo=NY).astimezone(UTC)

        async def moved() -> bool:
            return await pending_due(engine, acc) == friday_2pm

        await wait_for(moved, "the next step moved inside the debtor's window")
        log = [d for d in await decisions(engine, acc) if d["rule_id"] == "override.set_channel_preference"]
        assert len(log) == 1 and log[0]["outcome"] == "updated"
        assert "channels from now on: email" in log[0]["reason"]
        assert "quiet times: not before 14:00, not after 18:00, not on Thu" in log[0]["reason"]

        # nothing goes before it (a tick at 13:30 local on Friday: not due yet) ... (the tick may fire other
        # tests' accounts: this runner reads the shared topic from the start)
        await run_tick(engine, deps(friday_2pm - timedelta(minutes=30)))
        assert await notices(engine, acc) == [] and await pending_due(engine, acc) == friday_2pm
        # ... and at 14:00 the step goes by email only, carrying the window for the dispatchers' gate
        for _ in range(20):  # a batch is at most 500 timers
            await run_tick(engine, deps(friday_2pm))
            if sent := await notices(engine, acc):
                break
        assert [n["channel"] for n in sent] == ["email"], sent
        assert sent[0]["notice_id"] == f"{acc}:default:v1:s1:c0:email"
        window = ContactWindow.model_validate(sent[0]["contact_window"])
        assert window == ContactWindow(not_before=time(14), not_after=time(18), avoid_weekdays=[4])

    # the page shows the choice back
    again = (await client.get("/portal/account?done=preferences")).text
    assert "contact preferences are saved" in again
    assert '<option value="email" selected>' in again and '<option value="14:00" selected>' in again
    assert 'name="avoid" value="4" checked' in again


async def test_a_spanish_locale_account_gets_the_spanish_email_with_its_link(
    broker: Any, segmenter_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the segmenter's handler and timer (its database, its default locales: MX -> es) to the email
    dispatcher's renderer: the Spanish reminder, with the notice's own link in both parts."""
    acc = f"PREF-ES-{uuid.uuid4().hex[:8]}"
    engine = make_engine(segmenter_url)
    try:
        from .support import handle

        mx = account(
            acc, due_date=date(2026, 3, 1), country="MX", region="CMX", timezone="America/Mexico_City"
        )
        d = deps(datetime(2026, 3, 5, 12, 0, tzinfo=ZoneInfo("America/Mexico_City")).astimezone(UTC))
        await handle(engine, d, mx)
        await run_tick(engine, d)
        [email] = [n for n in await notices(engine, acc) if n["channel"] == "email"]
    finally:
        await engine.dispose()
    notice = NoticeDue.model_validate({k: v for k, v in email.items() if k != "ce_id"})
    assert notice.locale == "es"

    monkeypatch.setenv("ARREARS_LINK_KEY", KEY)
    monkeypatch.setenv("ARREARS_LINK_PUBLIC_URL", "https://pay.acme.test/p/")
    links.reset_configuration()
    try:
        ch = EmailChannel(
            EmailSettings(
                service_name="dispatcher-email",
                gmail_api_endpoint="http://127.0.0.1:9",
                gmail_token="t",
                gmail_sender="cobros@example.com",
            )
        )
        msg = message_from_bytes(base64.b64decode(ch.render(notice)["raw"]), policy=policy.default)
    finally:
        monkeypatch.delenv("ARREARS_LINK_KEY")
        links.reset_configuration()
    parts = {p.get_content_type(): p.get_content() for p in msg.iter_parts()}
    assert msg["Subject"].startswith("Recordatorio:")
    assert "recordarle amablemente" in parts["text/plain"] and "Darse de baja" in parts["text/html"]
    [url] = [w for w in parts["text/plain"].split() if w.startswith("https://pay.acme.test/p/")]
    claims = LinkSigner(KEY).verify(url.removeprefix("https://pay.acme.test/p/"), now=notice.due_at)
    assert claims.notice_id == notice.notice_id and claims.channel == "email"
    assert f'href="{url}"' in parts["text/html"]
