"""Confirmations and payment-retry notices end to end through the dispatch path: the segmenter plans them
(its outbox), the real SMS / email delivery engines send them through the QUO / Gmail emulators, and the
emulators' ledgers count what reached the provider — once per fact, in the customer's language, never after
an opt-out, never in quiet hours."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest
from arrears_dispatcher_email.__main__ import build_engine as build_email
from arrears_dispatcher_email.settings import EmailSettings
from arrears_dispatcher_sms.__main__ import build_engine as build_sms
from arrears_emulators.common import EmulatorServer
from arrears_emulators.gmail.app import GmailConfig
from arrears_emulators.gmail.app import create_app as create_gmail
from arrears_emulators.quo.app import QuoConfig
from arrears_emulators.quo.app import create_app as create_quo
from arrears_segmenter.consumer import make_handler
from arrears_segmenter.payments.models import CustomerNotices
from arrears_segmenter.timers.scheduled import tick
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.delivery import DeliveryEngine
from arrears_shared.events import Intent, NoticeDue, PaymentFailed, utcnow
from arrears_shared.stream.transaction import transaction
from dispatch.helpers import (
    FROM_NUMBER,
    SENDER,
    bound,
    daytime_zone,
    drain,
    feed,
    ledger,
    message_sent_events,
    night_zone,
    opt_out,
    phone,
    sms_settings,
    states,
)
from segmenter.support import account, deps, envelope, notices, reply
from sqlalchemy.ext.asyncio import AsyncEngine

SMS, EMAIL = "dispatcher_sms", "dispatcher_email"


@pytest.fixture
def quo() -> Any:
    with EmulatorServer(create_quo(QuoConfig(phone_numbers={FROM_NUMBER: "PNarrearsTest1"}))) as srv:
        yield srv


@pytest.fixture
def gmail() -> Any:
    with EmulatorServer(create_gmail(GmailConfig(user_email=SENDER))) as srv:
        yield srv


@pytest.fixture
async def seg(fresh_database_url: Callable[..., str]) -> AsyncIterator[AsyncEngine]:
    url = fresh_database_url("segmenter_confirm_dispatch")
    await asyncio.to_thread(upgrade, url, "segmenter")
    e = make_engine(url)
    yield e
    await e.dispose()


@pytest.fixture
async def sms(quo: Any, fresh_database_url: Callable[..., str]) -> AsyncIterator[DeliveryEngine]:
    db = fresh_database_url("dispatch_confirm_sms")
    await asyncio.to_thread(upgrade, db, "dispatcher-sms")
    eng, ae = bound(build_sms(sms_settings(quo.url, db)), db, SMS, "dispatcher-sms")  # the real gate
    yield eng
    await eng.channel.aclose()  # type: ignore[attr-defined]
    await ae.dispose()


@pytest.fixture
async def email(gmail: Any, fresh_database_url: Callable[..., str]) -> AsyncIterator[DeliveryEngine]:
    db = fresh_database_url("dispatch_confirm_email")
    await asyncio.to_thread(upgrade, db, "dispatcher-email")
    s = EmailSettings(
        service_name="dispatcher-email",
        database_url=db,
        gmail_api_endpoint=gmail.url,
        gmail_token="emulator-token",
        gmail_sender=SENDER,
        gmail_timeout_s=3.0,
        dispatch_in_doubt_after_s=1.0,
        dispatch_backoff_base_s=0.05,
        dispatch_backoff_max_s=0.2,
    )
    eng, ae = bound(build_email(s), db, EMAIL, "dispatcher-email")
    yield eng
    await eng.channel.aclose()  # type: ignore[attr-defined]
    await ae.dispose()


def at_now() -> Any:
    d = deps(utcnow())
    d.notify = replace(CustomerNotices(), pay_with="call 555-0100")
    return d


async def plan(seg: AsyncEngine, *events: Any, ids: list[str | None] | None = None) -> None:
    envs = [envelope(e, (ids or [None] * len(events))[i]) for i, e in enumerate(events)]
    async with transaction(seg, "segmenter", "segmenter") as tx:
        await make_handler(at_now())(envs, tx)


async def planned(seg: AsyncEngine, aid: str, purpose: str) -> list[NoticeDue]:
    return [
        NoticeDue.model_validate({k: v for k, v in n.items() if k != "ce_id"})
        for n in await notices(seg, aid, None)
        if n["purpose"] == purpose
    ]


def customer(aid: str, zone: str, number: str, **kw: Any) -> Any:
    return account(
        aid, due_date=date(2026, 1, 1), timezone=zone, phone=number, region=None, as_of=utcnow(), **kw
    )


def paid(aid: str, zone: str, number: str, **kw: Any) -> Any:
    return customer(
        aid,
        zone,
        number,
        change="payment",
        source="payment",
        balance_minor=30_000,
        last_payment_minor=20_000,
        last_payment_date=utcnow().date(),
        content_hash="paid",
        **kw,
    )


async def test_a_receipt_reaches_the_customer_once_in_their_language(
    seg: AsyncEngine, sms: DeliveryEngine, quo: Any
) -> None:
    zone = daytime_zone()
    en, es = phone(), phone()
    await plan(seg, customer("D-EN", zone, en), customer("D-ES", zone, es, country="MX"))
    await plan(
        seg,
        paid("D-EN", zone, en),
        paid("D-ES", zone, es, country="MX"),
        ids=["payment:stripe:a", "payment:stripe:b"],
    )
    await plan(seg, paid("D-EN", zone, en), ids=["payment:stripe:a"])  # a replayed payment: nothing new
    (r_en,) = await planned(seg, "D-EN", "payment_receipt")
    (r_es,) = await planned(seg, "D-ES", "payment_receipt")
    await feed(sms, [r_en, r_es], SMS)
    await feed(sms, [r_en], SMS)  # the notice delivered twice (a relay republish)
    await drain(sms)
    entries = ledger(quo.url)["entries"]  # QUO carries no notice id: counted per recipient
    assert sorted(e["recipient"] for e in entries) == sorted([en, es])
    texts = {e["recipient"]: e["content"] for e in entries}
    assert "we received your payment of $200.00" in texts[en] and "Balance left: $300.00" in texts[en]
    assert "Reply STOP to opt out" in texts[en] and r_en.reference and r_en.reference in texts[en]
    assert "recibimos su pago de $200.00" in texts[es] and "Responda STOP" in texts[es]
    sent = [e for e in await message_sent_events(sms.engine, SMS) if e["notice_id"] == r_en.notice_id]
    assert [(e["status"], e["purpose"]) for e in sent] == [("sent", "payment_receipt")]


async def test_an_opt_out_that_arrives_after_planning_suppresses_the_confirmation(
    seg: AsyncEngine, sms: DeliveryEngine, quo: Any
) -> None:
    zone, number = daytime_zone(), phone()
    await plan(seg, customer("D-OO", zone, number))
    await plan(seg, reply("D-OO", Intent.DISPUTE, reply_id="r-d-oo", received_at=utcnow()))
    (ack,) = await planned(seg, "D-OO", "dispute_acknowledgement")
    assert ack.channel == "sms"
    await feed(sms, [opt_out("D-OO"), ack], SMS)
    await drain(sms)
    assert (await states(sms.engine, SMS))[ack.notice_id]["state"] == "suppressed"
    assert ledger(quo.url)["entries"] == []


async def test_a_confirmation_in_quiet_hours_waits_and_is_not_sent(
    seg: AsyncEngine, sms: DeliveryEngine, quo: Any
) -> None:
    zone, number = night_zone(), phone()
    await plan(seg, customer("D-NT", zone, number))
    await plan(seg, paid("D-NT", zone, number), ids=["payment:stripe:nt"])
    (receipt,) = await planned(seg, "D-NT", "payment_receipt")
    assert receipt.due_at > utcnow() + timedelta(hours=1)  # planned for when contact hours open
    # even if it arrived due now, the dispatcher's own gate defers it
    await feed(sms, [receipt.model_copy(update={"due_at": utcnow()})], SMS)
    await drain(sms)
    row = (await states(sms.engine, SMS))[receipt.notice_id]
    assert row["state"] == "queued" and row["last_error"].startswith("deferred:quiet_hours")
    assert ledger(quo.url)["entries"] == []


async def test_a_promise_confirmation_by_email_once_in_spanish(
    seg: AsyncEngine, email: DeliveryEngine, gmail: Any
) -> None:
    zone, number = daytime_zone(), phone()
    await plan(seg, customer("D-EM", zone, number, country="ES"))
    promise = reply(
        "D-EM",
        Intent.PROMISE_TO_PAY,
        channel="email",
        from_address="ada@example.com",
        reply_id="r-em",
        promise_amount_minor=20_000,
        promise_date=utcnow().date() + timedelta(days=5),
        received_at=utcnow(),
    )
    await plan(seg, promise)
    await plan(seg, promise)
    (conf,) = await planned(seg, "D-EM", "promise_confirmation")
    assert (conf.channel, conf.locale) == ("email", "es")
    await feed(email, [conf, conf], EMAIL)
    await drain(email)
    found = ledger(gmail.url, notice_id=conf.notice_id)
    assert found["count"] == 1
    assert found["entries"][0]["content"].startswith("Su promesa de pago para el")


async def test_payment_retry_notices_carry_the_way_to_pay(
    seg: AsyncEngine, sms: DeliveryEngine, quo: Any
) -> None:
    zone, number = daytime_zone(), phone()
    now = utcnow()
    await plan(seg, customer("D-RT", zone, number))
    failure = PaymentFailed(
        account_id="D-RT",
        provider="stripe",
        payment_id="pi_rt",
        failure_id="ch_rt",
        amount_minor=12_500,
        currency="USD",
        failed_at=now - timedelta(days=2, minutes=1),
    )
    await plan(seg, failure)
    d = at_now()
    await tick(seg, "segmenter", "segmenter", d)
    (retry,) = await planned(seg, "D-RT", "payment_retry")
    await feed(sms, [retry], SMS)
    await drain(sms)
    (entry,) = ledger(quo.url)["entries"]
    assert entry["recipient"] == number
    assert "did not go through" in entry["content"] and "call 555-0100" in entry["content"]
    assert "notice 1 of 3" in entry["content"]
