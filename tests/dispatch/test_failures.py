"""Failure handling: invalid channels, DLQ after the last attempt + replay, circuit breaker, daily quota and
the Gmail API -> SMTP fallback (a real aiosmtpd relay), all through the real clients and emulators."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from arrears_dispatcher_email.__main__ import build_engine as build_email
from arrears_dispatcher_email.mime import message_id_for
from arrears_dispatcher_email.settings import EmailSettings
from arrears_shared.cloudevents import Envelope, decode
from arrears_shared.db.migrate import upgrade
from arrears_shared.delivery import DeliveryEngine, allow_all
from arrears_shared.events import MessageSent, NoticeDue
from arrears_shared.stream.transaction import transaction
from arrears_shared.vault import cipher
from arrears_shared.vault.keys import vault
from sqlalchemy import text
from vault_support import SyncKeys, opened_json

from .helpers import (
    SENDER,
    bound,
    control,
    drain,
    envelope,
    feed,
    ledger,
    message_sent_events,
    notice,
    states,
)
from .test_engine import SCHEMA as SMS_SCHEMA

EMAIL_SCHEMA = "dispatcher_email"


class Relay:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 queued"


@pytest.fixture
def smtp(free_tcp_port: int) -> Iterator[tuple[Controller, Relay]]:
    """A real local SMTP relay (aiosmtpd) recording every message it accepts."""
    relay = Relay()
    ctl = Controller(relay, hostname="127.0.0.1", port=free_tcp_port)
    ctl.start()
    try:
        yield ctl, relay
    finally:
        ctl.stop()


async def settle(
    eng: DeliveryEngine, schema: str, done: Callable[[dict[str, Any]], bool], t: float = 15
) -> None:
    deadline = asyncio.get_running_loop().time() + t
    while not done(await states(eng.engine, schema)):
        assert asyncio.get_running_loop().time() < deadline, await states(eng.engine, schema)
        if not await eng.process_one():
            await asyncio.sleep(0.05)


async def outbox(eng: DeliveryEngine, schema: str, topic: str) -> list[Any]:
    async with eng.engine.connect() as c:
        rows = await c.execute(
            text(f"SELECT key, value, headers FROM {schema}.outbox WHERE topic = :t ORDER BY id"),
            {"t": topic},
        )
        return [r for r in rows]


async def opened_sent_events(eng: DeliveryEngine, schema: str, url: str) -> list[dict[str, Any]]:
    """`message_sent_events` with the personal fields opened with the vault of database `url`."""
    return [opened_json(url, r.headers, r.value) for r in await outbox(eng, schema, "message-sent")]


# -- SMS ---------------------------------------------------------------------------------------------------
async def test_permanent_failure_marks_the_channel_invalid(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    bad = "+15550004321"
    control(quo.url, "PUT", "numbers", {"invalid": [bad]})
    eng = make()
    first = notice(to=bad)
    await feed(eng, [first], SMS_SCHEMA)
    await drain(eng)
    later = notice(to=bad, account_id=first.account_id).model_copy(update={"notice_id": "later-1"})
    await feed(eng, [later], SMS_SCHEMA)
    await drain(eng)
    assert ledger(quo.url)["count"] == 0
    stats = httpx_stats(quo.url)
    assert stats["by_operation"].get("send") == 1  # the second notice never reached the provider
    ev = {e["notice_id"]: e for e in await message_sent_events(eng.engine, SMS_SCHEMA)}
    assert ev["later-1"]["status"] == "failed" and ev["later-1"]["reason"].startswith("channel_invalid:")
    assert ev["later-1"]["permanent"] is True


def httpx_stats(url: str) -> dict[str, Any]:
    from .helpers import emulator_stats

    return emulator_stats(url)


async def test_last_attempt_goes_to_the_dlq_and_a_replay_sends_once(
    quo: Any, make: Callable[..., DeliveryEngine], db: str
) -> None:
    control(quo.url, "POST", "faults", {"error_5xx": {"next": 2, "status": 500, "operations": ["send"]}})
    eng = make(dispatch_max_attempts=2, dispatch_breaker_failures=10)
    n = notice()
    await feed(eng, [n], SMS_SCHEMA)
    await settle(eng, SMS_SCHEMA, lambda st: st[n.notice_id]["state"] == "failed")
    [dlq] = await outbox(eng, SMS_SCHEMA, "notice-due.dispatcher-sms.dlq")
    headers = {k: v for k, v in dlq.headers}
    assert headers["kafka_dlt-original-topic"] == "notice-due"
    assert (
        headers["arrears-attempts"] == "2"
        and "gave up after 2 attempts" in headers["kafka_dlt-exception-message"]
    )
    keys = {n.account_id: SyncKeys(db)[n.account_id]}  # the vault's key of the account (a plain mapping)
    env: Envelope = decode([(k, v.encode()) for k, v in dlq.headers], bytes(dlq.value), keys)
    assert isinstance(env.data, NoticeDue)
    assert env.data.notice_id == n.notice_id and env.id.startswith("dlq:")
    assert env.data == n and n.to.encode() not in bytes(dlq.value)  # the dead letter holds it sealed
    # `arrears dlq replay` republishes exactly this record (same ce_id); the service applies it once
    for _ in range(2):
        async with transaction(eng.engine, SMS_SCHEMA, "test") as tx:
            await eng.handle_batch([env], tx)
        await drain(eng)
    assert (await states(eng.engine, SMS_SCHEMA))[n.notice_id]["state"] == "sent"
    assert ledger(quo.url)["count"] == 1
    statuses = [e["status"] for e in await message_sent_events(eng.engine, SMS_SCHEMA)]
    assert statuses == ["failed", "sent"]


async def test_circuit_breaker_holds_notices_during_an_outage(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    control(
        quo.url, "POST", "faults", {"error_5xx": {"probability": 1.0, "status": 503, "operations": ["send"]}}
    )
    eng = make(dispatch_breaker_failures=2, dispatch_breaker_cooldown_s=1.0, dispatch_max_attempts=50)
    ns = [notice() for _ in range(5)]
    await feed(eng, ns, SMS_SCHEMA)
    for _ in range(20):
        await eng.process_one()
    assert eng.breakers["primary"].state == "open"
    assert await eng.process_one() is False  # open circuit: nothing claimed, nothing burnt
    sends = httpx_stats(quo.url)["by_operation"]["send"]
    assert sends == 2
    control(quo.url, "POST", "faults", {"clear": True})
    await asyncio.sleep(1.1)  # cooldown -> half-open trial succeeds -> closed
    await settle(eng, SMS_SCHEMA, lambda st: all(s["state"] == "sent" for s in st.values()))
    assert eng.breakers["primary"].state == "closed"
    assert sorted(e["recipient"] for e in ledger(quo.url)["entries"]) == sorted(x.to for x in ns)
    assert await outbox(eng, SMS_SCHEMA, "notice-due.dispatcher-sms.dlq") == []


# -- email -------------------------------------------------------------------------------------------------
@pytest.fixture
async def email_db(fresh_database_url: Callable[..., str]) -> str:
    db = fresh_database_url("dispatch_email_f")
    await asyncio.to_thread(upgrade, db, "dispatcher-email")
    return db


@pytest.fixture
async def make_email(gmail: Any, email_db: str) -> AsyncIterator[Callable[..., DeliveryEngine]]:
    db = email_db
    made: list[Any] = []

    def factory(**kw: Any) -> DeliveryEngine:
        base: dict[str, Any] = {
            "service_name": "dispatcher-email",
            "database_url": db,
            "gmail_api_endpoint": gmail.url,
            "gmail_token": "emulator-token",
            "gmail_sender": SENDER,
            "gmail_timeout_s": 3.0,
            "gmail_rate_per_s": 50.0,
            "dispatch_in_doubt_after_s": 1.0,
            "dispatch_backoff_base_s": 0.05,
            "dispatch_backoff_max_s": 0.2,
            "dispatch_idle_poll_s": 0.05,
        }
        base.update(kw)
        eng, ae = bound(
            build_email(EmailSettings(**base), gate=allow_all), db, EMAIL_SCHEMA, "dispatcher-email"
        )
        made.append((eng, ae))
        return eng

    yield factory
    for eng, ae in made:
        await eng.channel.aclose()  # type: ignore[attr-defined]
        await ae.dispose()


async def test_daily_quota_then_smtp_fallback(
    gmail: Any, smtp: tuple[Controller, Relay], make_email: Callable[..., DeliveryEngine]
) -> None:
    eng = make_email(gmail_daily_quota=2)
    ns = [notice(channel="email") for _ in range(3)]
    await feed(eng, ns, EMAIL_SCHEMA)
    await drain(eng)
    st = await states(eng.engine, EMAIL_SCHEMA)
    assert sorted(s["state"] for s in st.values()) == ["queued", "sent", "sent"]  # the third waits
    assert ledger(gmail.url)["count"] == 2
    ctl, relay = smtp
    with_relay = make_email(
        gmail_daily_quota=2, smtp_host="127.0.0.1", smtp_port=ctl.port, smtp_starttls=False
    )
    await drain(with_relay)
    st = await states(eng.engine, EMAIL_SCHEMA)
    assert all(s["state"] == "sent" for s in st.values())
    assert ledger(gmail.url)["count"] == 2 and len(relay.messages) == 1
    [(mail_from, rcpts, raw)] = relay.messages
    msg = message_from_bytes(raw, policy=policy.default)
    [waiting] = [n for n in ns if n.to in rcpts]
    assert mail_from == SENDER and msg["Message-ID"] == message_id_for(waiting.notice_id, SENDER)
    ev = {e["notice_id"]: e for e in await message_sent_events(eng.engine, EMAIL_SCHEMA)}
    assert ev[waiting.notice_id]["provider"] == "smtp" and ev[waiting.notice_id]["status"] == "sent"


async def test_gmail_outage_falls_back_to_smtp(
    gmail: Any, smtp: tuple[Controller, Relay], make_email: Callable[..., DeliveryEngine]
) -> None:
    ctl, relay = smtp
    control(
        gmail.url,
        "POST",
        "faults",
        {"error_5xx": {"probability": 1.0, "status": 503, "operations": ["users.messages.send"]}},
    )
    eng = make_email(
        smtp_host="127.0.0.1",
        smtp_port=ctl.port,
        smtp_starttls=False,
        dispatch_breaker_failures=2,
        dispatch_breaker_cooldown_s=60,
    )
    ns = [notice(channel="email") for _ in range(4)]
    await feed(eng, ns, EMAIL_SCHEMA)
    await settle(eng, EMAIL_SCHEMA, lambda st: all(s["state"] == "sent" for s in st.values()))
    assert eng.breakers["primary"].state == "open"
    assert ledger(gmail.url)["count"] == 0
    assert sorted(r[1][0] for r in relay.messages) == sorted(n.to for n in ns)  # each exactly once
    sent = await message_sent_events(eng.engine, EMAIL_SCHEMA)
    assert {e["provider"] for e in sent} == {"smtp"} and len(sent) == 4


async def test_retry_after_from_gmail_pauses_the_shared_limiter(
    gmail: Any, make_email: Callable[..., DeliveryEngine]
) -> None:
    control(gmail.url, "PUT", "limits", {"rate": 100.0, "burst": 100.0})  # one send per second
    eng = make_email(gmail_rate_per_s=20.0, gmail_rate_burst=5.0)  # we are looser than the provider
    ns = [notice(channel="email") for _ in range(3)]
    await feed(eng, ns, EMAIL_SCHEMA)
    await settle(eng, EMAIL_SCHEMA, lambda st: all(s["state"] == "sent" for s in st.values()))
    assert ledger(gmail.url)["count"] == 3
    assert httpx_stats(gmail.url)["rate_limited"] >= 1  # the provider did push back ...
    st = await states(eng.engine, EMAIL_SCHEMA)
    assert all(s["attempts"] == 1 for s in st.values())  # ... and a 429 is not an attempt


# -- permanent failures and late verdicts -------------------------------------------------------------
async def test_a_permanent_failure_is_reported_and_the_dispatcher_never_falls_back_itself(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    """Fallback is the segmenter's (it owns the channel order, tests/segmenter/test_fallback.py): the
    dispatcher only reports the permanent failure, even for a notice whose step lists other channels."""
    bad = "+15550004322"
    control(quo.url, "PUT", "numbers", {"invalid": [bad]})
    eng = make()
    n = notice(to=bad).model_copy(
        update={"fallback_channels": ["email"], "fallback_to": {"email": "jordan@example.com"}}
    )
    await feed(eng, [n], SMS_SCHEMA)
    await drain(eng)
    assert await outbox(eng, SMS_SCHEMA, "notice-due") == []
    failed = {e["notice_id"]: e for e in await message_sent_events(eng.engine, SMS_SCHEMA)}
    assert failed[n.notice_id]["status"] == "failed" and failed[n.notice_id]["permanent"]


async def test_a_hard_bounce_reported_by_responses_marks_the_address_invalid(
    gmail: Any, make_email: Callable[..., DeliveryEngine], email_db: str
) -> None:
    eng = make_email()
    first = notice(channel="email")
    await feed(eng, [first], EMAIL_SCHEMA)
    await drain(eng)
    [sent] = await opened_sent_events(eng, EMAIL_SCHEMA, email_db)
    assert sent["to"] == first.to
    bounce = MessageSent.model_validate(
        {**sent, "status": "failed", "permanent": True, "reason": "bounced: 5.1.1"}
    )
    own = MessageSent.model_validate(
        {**sent, "to": "other@example.com", "status": "failed", "permanent": True}
    )
    async with transaction(eng.engine, EMAIL_SCHEMA, "test") as tx:
        await eng.handle_batch(
            [envelope(bounce, source="responses"), envelope(own, source="dispatcher-email")], tx
        )
    later = notice(channel="email", to=first.to, account_id=first.account_id).model_copy(
        update={"notice_id": "later-email-1"}
    )
    await feed(eng, [later], EMAIL_SCHEMA)
    await drain(eng)
    assert ledger(gmail.url)["count"] == 1  # only the first one reached Gmail
    ev = {e["notice_id"]: e for e in await message_sent_events(eng.engine, EMAIL_SCHEMA)}
    assert ev["later-email-1"]["reason"] == "channel_invalid: bounced: 5.1.1"
    async with eng.engine.connect() as c:
        addresses = list(
            (await c.execute(text(f"SELECT address FROM {EMAIL_SCHEMA}.invalid_channels"))).scalars()
        )
        aead = (await vault().for_reading(c, [first.account_id]))[first.account_id]
    assert all(cipher.is_sealed(a) and first.to not in a for a in addresses)  # stored sealed
    opened = [cipher.open_value(aead, first.account_id, a) for a in addresses]
    assert opened == [first.to]  # our own events are not read back as verdicts


# -- wire fidelity (issue #13) -----------------------------------------------------------------------------
async def test_in_doubt_sms_the_carrier_refused_is_settled_failed_never_resent(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    """An in-doubt SMS is looked up by the PN id of our number (resolved once from GET /phone-numbers; the
    emulator refuses the E.164 form like QUO does). Found with status `undelivered`, it was accepted and
    then refused by the carrier: failed, not resent."""
    n = notice()
    control(quo.url, "PUT", "numbers", {"undelivered": [n.to]})
    control(quo.url, "POST", "faults", {"accept_then_drop": {"next": 1, "operations": ["send"]}})
    eng = make()
    await feed(eng, [n], SMS_SCHEMA)
    await drain(eng)
    assert (await states(eng.engine, SMS_SCHEMA))[n.notice_id]["state"] == "sending"
    await asyncio.sleep(1.2)
    assert await eng.reconcile_in_doubt() == 1
    await drain(eng)
    st = (await states(eng.engine, SMS_SCHEMA))[n.notice_id]
    led = ledger(quo.url)
    assert led["count"] == 1  # never resent
    assert st["state"] == "failed" and st["provider_message_id"] == led["entries"][0]["provider_id"]
    [ev] = await message_sent_events(eng.engine, SMS_SCHEMA)
    assert ev["status"] == "failed" and "undelivered" in ev["reason"] and not ev["permanent"]
    stats = httpx_stats(quo.url)
    assert stats["by_operation"]["phone-numbers"] == 1 and stats["by_status"].get("400", 0) == 0


async def test_gmail_sending_limit_pauses_the_mailbox_for_every_replica(
    gmail: Any, smtp: tuple[Controller, Relay], make_email: Callable[..., DeliveryEngine]
) -> None:
    """Gmail's 429 "(Mail sending)" names the retry time in its message only: the mailbox is paused until
    then for every replica (not a 1-second retry loop) and the steps go by the SMTP relay meanwhile."""
    control(gmail.url, "PUT", "limits", {"daily_limit": 1})  # Gmail's real limit is below our own count
    ctl, relay = smtp
    relay_kw = {"smtp_host": "127.0.0.1", "smtp_port": ctl.port, "smtp_starttls": False}
    first = make_email(gmail_daily_quota=100, **relay_kw)
    ns = [notice(channel="email") for _ in range(3)]
    await feed(first, ns, EMAIL_SCHEMA)
    await settle(first, EMAIL_SCHEMA, lambda st: all(s["state"] == "sent" for s in st.values()))
    assert ledger(gmail.url)["count"] == 1 and len(relay.messages) == 2
    st = await states(first.engine, EMAIL_SCHEMA)
    assert all(s["attempts"] == 1 for s in st.values())  # the 429 was not an attempt
    async with first.engine.connect() as c:
        until = (await c.execute(text(f"SELECT until FROM {EMAIL_SCHEMA}.route_pauses"))).scalar_one()
    hours = (until - datetime.now(UTC)).total_seconds() / 3600
    assert 23 < hours <= 24  # the rolling window frees 24 h after the first send, not at UTC midnight

    second = make_email(gmail_daily_quota=100, **relay_kw)  # another replica, told nothing itself
    more = [notice(channel="email") for _ in range(2)]
    await feed(second, more, EMAIL_SCHEMA)
    await settle(second, EMAIL_SCHEMA, lambda st: all(s["state"] == "sent" for s in st.values()))
    assert len(relay.messages) == 4
    assert httpx_stats(gmail.url)["extra"]["sending_limit_429s"] == 1  # nobody knocked again


async def test_rolling_daily_quota_is_not_reset_at_midnight(
    gmail: Any, make_email: Callable[..., DeliveryEngine]
) -> None:
    """Our own count is a rolling 24 h: sends of 23 h ago still count, sends of 25 h ago do not."""
    eng = make_email(gmail_daily_quota=3)
    await eng.ensure_limiter()
    name = eng.channel.limiter_name
    async with eng.engine.begin() as c:
        await c.execute(
            text(
                f"INSERT INTO {EMAIL_SCHEMA}.quota_window (name, bucket, used) VALUES"
                " (:n, date_trunc('minute', now()) - interval '23 hours', 2),"
                " (:n, date_trunc('minute', now()) - interval '25 hours', 5)"
            ),
            {"n": name},
        )
    ns = [notice(channel="email") for _ in range(3)]
    await feed(eng, ns, EMAIL_SCHEMA)
    await drain(eng)
    st = await states(eng.engine, EMAIL_SCHEMA)
    assert sorted(s["state"] for s in st.values()) == ["queued", "queued", "sent"]
    assert ledger(gmail.url)["count"] == 1
