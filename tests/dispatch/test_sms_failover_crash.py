"""SMS -> email failover across a crash: the switch is one transaction (the SMS row settled and the email
notice in the outbox, or neither), and replays of the email notice land on one delivery. Engines bound to one
database (the relay's records read from the outbox), QUO and Gmail emulators counting sends."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from arrears_dispatcher_email.__main__ import build_engine as build_email
from arrears_dispatcher_email.settings import EmailSettings
from arrears_shared.cloudevents import Envelope
from arrears_shared.db.migrate import upgrade
from arrears_shared.delivery import DeliveryEngine, allow_all
from arrears_shared.events import NoticeDue
from arrears_shared.stream.transaction import transaction
from sqlalchemy import text
from vault_support import open_records, row_record

from .helpers import SENDER, bound, control, drain, feed, ledger, notice, states
from .test_sms_failover import OUTAGE, with_email


class Crash(Exception):
    """The process dies here: its open transaction is rolled back, as after a kill."""


@pytest.fixture
async def email_engine(gmail: Any, db: str) -> AsyncIterator[DeliveryEngine]:
    await asyncio.to_thread(upgrade, db, "dispatcher-email")
    s = EmailSettings(
        service_name="dispatcher-email",
        database_url=db,
        gmail_api_endpoint=gmail.url,
        gmail_token="emulator-token",
        gmail_sender=SENDER,
        gmail_timeout_s=3.0,
    )
    eng, ae = bound(build_email(s, gate=allow_all), db, "dispatcher_email", "dispatcher-email")
    yield eng
    await eng.channel.aclose()  # type: ignore[attr-defined]
    await ae.dispose()


async def outbox_notices(eng: DeliveryEngine) -> list[Envelope]:
    async with eng.engine.connect() as c:
        rows = (
            await c.execute(
                text(
                    "SELECT headers, value FROM dispatcher_sms.outbox WHERE topic = 'notice-due' ORDER BY id"
                )
            )
        ).all()
        return await open_records(c, [row_record(r) for r in rows])


async def test_crash_mid_switch_and_replays_never_send_twice(
    make: Callable[..., DeliveryEngine], email_engine: DeliveryEngine, quo: Any, gmail: Any
) -> None:
    sms = make(dispatch_breaker_failures=2, dispatch_breaker_cooldown_s=60.0, dispatch_failover_after_s=0.3)
    notices = [with_email(notice()) for _ in range(5)]
    await feed(sms, notices, "dispatcher_sms")
    control(quo.url, "POST", "faults", OUTAGE)
    while sms.breakers["primary"].state != "open":
        await sms.process_one()
    await asyncio.sleep(0.4)
    assert sms.failover.active()

    # killed after the switch was written, before its commit: nothing happened
    with pytest.raises(Crash):
        async with sms.bound.tx() as tx:
            assert len(await sms.failover.switch_batch(tx)) == 5
            raise Crash
    assert {s["state"] for s in (await states(sms.engine, "dispatcher_sms")).values()} == {"queued"}
    assert await outbox_notices(sms) == []

    # restarted: switched once; a second pass (another replica, a retried tick) finds nothing to switch
    assert await sms.fail_over() == 5
    assert await sms.fail_over() == 0
    envs = await outbox_notices(sms)
    assert sorted(e.data.notice_id for e in envs) == sorted(
        n.notice_id.removesuffix(":sms") + ":email" for n in notices
    )
    assert all(isinstance(e.data, NoticeDue) and e.data.channel == "email" for e in envs)
    assert {e.data.to for e in envs} == {n.fallback_to["email"] for n in notices}

    # the relay publishes, crashes before marking the rows published, publishes again; a replay under new
    # ids; the segmenter's own fallback of the same step: all land on one email delivery per step
    async with transaction(email_engine.engine, "dispatcher_email", "test") as tx:
        await email_engine.handle_batch(envs, tx)
    async with transaction(email_engine.engine, "dispatcher_email", "test") as tx:
        await email_engine.handle_batch(envs, tx)
    await feed(email_engine, [e.data for e in envs], "dispatcher_email")
    await drain(email_engine)
    await feed(email_engine, [e.data for e in envs], "dispatcher_email")
    await drain(email_engine)

    # QUO recovers: nothing of the switched steps is sent by SMS
    control(quo.url, "DELETE", "faults", {})
    sms.breakers["primary"].success()  # the half-open trial succeeded
    await drain(sms)
    await asyncio.sleep(0.5)

    sent = Counter(e["notice_id"] for e in ledger(gmail.url)["entries"])
    assert sent == Counter({e.data.notice_id: 1 for e in envs})
    assert not [e for e in ledger(quo.url)["entries"] if e["recipient"] in {n.to for n in notices}]
