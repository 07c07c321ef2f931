"""dispatcher-whatsapp: the shared `DeliveryEngine` with the WhatsApp channel, a real (migrated) Postgres,
the production Graph client and the WhatsApp Cloud API emulator; the webhook router behind a real server.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from arrears_dispatcher_whatsapp.__main__ import build_engine
from arrears_dispatcher_whatsapp.settings import WhatsAppSettings
from arrears_dispatcher_whatsapp.webhooks import InboundMessage, StatusUpdate, make_router, signature
from arrears_emulators.common import EmulatorServer
from arrears_emulators.whatsapp.app import WhatsAppConfig, create_app
from arrears_shared.db.migrate import upgrade
from arrears_shared.delivery import DeliveryEngine, allow_all
from arrears_shared.events import AgingBucket, NoticeDue, Tier, utcnow
from arrears_shared.vault import cipher
from fastapi import FastAPI
from sqlalchemy import text

from .helpers import (
    bound,
    control,
    daytime_zone,
    drain,
    emulator_stats,
    feed,
    ledger,
    message_sent_events,
    phone,
    states,
)

SCHEMA = "dispatcher_whatsapp"
SERVICE = "dispatcher-whatsapp"
TOKEN = "wa-dispatch-token"
PHONE_NUMBER_ID = "106540352242922"
APP_SECRET = "wa-dispatch-app-secret"
VERIFY_TOKEN = "wa-dispatch-verify"
WHATSAPP = "whatsapp"


# -- fixtures ------------------------------------------------------------------------------------------------
@pytest.fixture
def whatsapp() -> Iterator[EmulatorServer]:
    """A fresh emulator per test; its approved templates are those the packaged mapping names."""
    config = WhatsAppConfig(
        access_token=TOKEN, phone_number_id=PHONE_NUMBER_ID, app_secret=APP_SECRET, status_delay_ms=10
    )
    with EmulatorServer(create_app(config)) as srv:
        yield srv


@pytest.fixture
async def db(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("dispatch_whatsapp")
    await asyncio.to_thread(upgrade, url, SERVICE)
    return url


def wa_settings(api_url: str, db_url: str, **kw: Any) -> WhatsAppSettings:
    base: dict[str, Any] = {
        "service_name": SERVICE,
        "database_url": db_url,
        "whatsapp_base_url": api_url,
        "whatsapp_access_token": TOKEN,
        "whatsapp_phone_number_id": PHONE_NUMBER_ID,
        "whatsapp_app_secret": APP_SECRET,
        "whatsapp_timeout_s": 3.0,
        "dispatch_backoff_base_s": 0.05,
        "dispatch_backoff_max_s": 0.2,
        "dispatch_in_doubt_after_s": 1.0,
        "dispatch_reconcile_interval_s": 0.3,
        "dispatch_idle_poll_s": 0.05,
        "dispatch_send_timeout_s": 5.0,
        "dispatch_max_attempts": 4,
    }
    base.update(kw)
    return WhatsAppSettings(**base)


@pytest.fixture
async def make(whatsapp: EmulatorServer, db: str) -> AsyncIterator[Callable[..., DeliveryEngine]]:
    made: list[Any] = []

    def factory(**kw: Any) -> DeliveryEngine:
        eng, ae = bound(
            build_engine(wa_settings(whatsapp.url, db, **kw), gate=allow_all), db, SCHEMA, SERVICE
        )
        made.append((eng, ae))
        return eng

    yield factory
    for eng, ae in made:
        await eng.channel.aclose()  # type: ignore[attr-defined]
        await ae.dispose()


# -- helpers -------------------------------------------------------------------------------------------------
def wa_notice(
    *,
    tier: Tier = Tier.REMINDER,
    to: str | None = None,
    locale: str | None = None,
    purpose: str = "dunning",
    text: str | None = None,
    due_at: datetime | None = None,
    template_id: str | None = None,
) -> NoticeDue:
    acct = f"A-{uuid.uuid4().hex[:10]}"
    dunning = purpose == "dunning"
    return NoticeDue(
        account_id=acct,
        notice_id=f"{acct}:p1:v1:s1:c0:{WHATSAPP}"
        if dunning
        else f"{acct}:auto:{purpose}:r-{uuid.uuid4().hex[:6]}",
        policy_id="p1" if dunning else "auto-reply",
        policy_version=1,
        step=1 if dunning else 0,
        tier=tier,
        channel=WHATSAPP,  # type: ignore[arg-type]
        template_id=template_id or (f"{WHATSAPP}.{tier.value}" if dunning else f"auto-reply.{purpose}"),
        to=to or phone(),
        customer_name="Jordan Test" if dunning else "",
        balance_minor=25_000 if dunning else 0,
        currency="USD",
        days_past_due=40 if dunning else 0,
        aging_bucket=AgingBucket.D31_60 if dunning else AgingBucket.CURRENT,
        timezone=daytime_zone(),
        country="US",
        due_at=due_at or utcnow(),
        locale=locale,
        purpose=purpose,  # type: ignore[arg-type]
        text=text,
    )


async def until_settled(eng: DeliveryEngine, notice_id: str, timeout_s: float = 20.0) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (st := (await states(eng.engine, SCHEMA))[notice_id])["state"] in ("queued", "sending"):
        assert asyncio.get_running_loop().time() < deadline, st
        if not await eng.process_one():
            await asyncio.sleep(0.05)
    return st


async def outbox(eng: DeliveryEngine, topic: str) -> list[Any]:
    async with eng.engine.connect() as c:
        return list(
            await c.execute(text(f"SELECT key, value FROM {SCHEMA}.outbox WHERE topic = :t"), {"t": topic})
        )


# -- sends ---------------------------------------------------------------------------------------------------
async def test_each_notice_is_sent_once_as_its_template(
    whatsapp: EmulatorServer, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make()
    notices = [wa_notice(tier=t) for t in (Tier.REMINDER, Tier.FIRM, Tier.FINAL)]
    spanish = wa_notice(tier=Tier.REMINDER, locale="es-MX")
    await feed(eng, [*notices, spanish], SCHEMA)
    await feed(eng, [*notices, spanish], SCHEMA)  # replayed with new ce_ids
    await drain(eng)
    await feed(eng, notices, SCHEMA)  # and again after they were sent
    await drain(eng)

    led = ledger(whatsapp.url)
    assert led["count"] == 4
    assert led["by_notice"] == {n.notice_id: 1 for n in [*notices, spanish]}  # biz_opaque_callback_data
    by_notice = {e["notice_id"]: e for e in led["entries"]}
    expected = {
        Tier.REMINDER: ("arrears_payment_reminder", ["Jordan", "$250.00", "Arrears Collections"]),
        Tier.FIRM: ("arrears_payment_overdue", ["Jordan", "$250.00", "40", "Arrears Collections"]),
        Tier.FINAL: ("arrears_final_notice", ["Jordan", "$250.00", "40", "Arrears Collections"]),
    }
    for n in notices:
        entry = by_notice[n.notice_id]
        assert entry["recipient"] == n.to and entry["details"]["type"] == "template"
        assert (entry["details"]["template"], entry["details"]["params"]) == expected[n.tier]
        assert entry["details"]["language"] == "en_US"
    assert by_notice[spanish.notice_id]["details"]["language"] == "es_MX"

    sent = await message_sent_events(eng.engine, SCHEMA)
    assert sorted(e["notice_id"] for e in sent) == sorted(n.notice_id for n in [*notices, spanish])
    assert {(e["status"], e["provider"], e["channel"]) for e in sent} == {
        ("sent", "whatsapp-cloud", WHATSAPP)
    }
    assert {e["provider_message_id"] for e in sent} == {e["provider_id"] for e in led["entries"]}


async def test_rate_limit_is_retried_without_a_duplicate(
    whatsapp: EmulatorServer, make: Callable[..., DeliveryEngine]
) -> None:
    control(whatsapp.url, "POST", "errors", {"code": 130429, "count": 2})  # HTTP 400, as Meta answers it
    eng = make()
    n = wa_notice()
    await feed(eng, [n], SCHEMA)
    started = time.monotonic()
    st = await until_settled(eng, n.notice_id)
    assert st["state"] == "sent" and st["attempts"] == 1, st  # a rate limit is not an attempt
    assert time.monotonic() - started >= 1.5  # the shared limiter paused ~1 s after each refusal
    led = ledger(whatsapp.url)
    assert led["count"] == 1 and led["by_notice"] == {n.notice_id: 1}
    stats = emulator_stats(whatsapp.url)
    assert stats["by_status"].get("400") == 2 and stats["by_status"].get("200") == 1
    [ev] = await message_sent_events(eng.engine, SCHEMA)
    assert ev["status"] == "sent" and ev["provider_message_id"] == led["entries"][0]["provider_id"]


async def test_server_error_is_retried(whatsapp: EmulatorServer, make: Callable[..., DeliveryEngine]) -> None:
    control(whatsapp.url, "POST", "errors", {"code": 131000, "count": 2})  # "Something went wrong", HTTP 500
    eng = make()
    n = wa_notice()
    await feed(eng, [n], SCHEMA)
    st = await until_settled(eng, n.notice_id)
    assert st["state"] == "sent" and st["attempts"] == 3
    assert ledger(whatsapp.url)["count"] == 1


async def test_template_errors_fail_permanently_with_a_clear_reason(
    whatsapp: EmulatorServer, make: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    mapping = tmp_path / "whatsapp.yaml"
    mapping.write_text(
        """
default_locale: en
dunning:
  reminder: {en: {name: arrears_payment_reminder, language: en_US, params: [first_name, amount]}}
  firm: {en: {name: arrears_payment_overdue, language: en_US, params: [first_name, amount, days_past_due, brand]}}
  final: {en: {name: arrears_final_notice_v2, language: en_US, params: [first_name, amount, days_past_due, brand]}}
"""
    )
    eng = make(whatsapp_templates_file=str(mapping))
    not_approved, wrong_count, fine = (
        wa_notice(tier=Tier.FINAL),
        wa_notice(tier=Tier.REMINDER),
        wa_notice(tier=Tier.FIRM),
    )
    await feed(eng, [not_approved, wrong_count, fine], SCHEMA)
    await drain(eng)
    st = await states(eng.engine, SCHEMA)
    assert st[fine.notice_id]["state"] == "sent"
    for n in (not_approved, wrong_count):
        assert st[n.notice_id]["state"] == "failed" and st[n.notice_id]["attempts"] == 1
    events = {e["notice_id"]: e for e in await message_sent_events(eng.engine, SCHEMA)}
    assert events[not_approved.notice_id]["permanent"] is True
    assert "template rejected" in events[not_approved.notice_id]["reason"]
    assert "132001" in events[not_approved.notice_id]["reason"]
    assert "arrears_final_notice_v2" in events[not_approved.notice_id]["reason"]
    assert events[wrong_count.notice_id]["permanent"] is True
    assert "132000" in events[wrong_count.notice_id]["reason"]
    assert "(2) does not match the expected number of params (3)" in events[wrong_count.notice_id]["reason"]
    assert ledger(whatsapp.url)["by_notice"] == {fine.notice_id: 1}


async def test_reply_answer_is_text_inside_the_window_and_a_template_outside(
    whatsapp: EmulatorServer, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make()
    now = datetime.now(UTC)
    inside = wa_notice(purpose="help", text="Reply PAY to get a link.", due_at=now - timedelta(hours=1))
    outside = wa_notice(purpose="help", text="Reply PAY to get a link.", due_at=now - timedelta(hours=25))
    # the customer wrote only to `inside` (what opens the window at Meta); `closing` believes it wrote 23h 55m
    # ago, inside our window but not the margin, so it goes as a template too
    closing = wa_notice(purpose="help", text="Reply PAY.", due_at=now - timedelta(hours=23, minutes=55))
    control(whatsapp.url, "POST", "inbound", {"from": inside.to, "text": "HELP", "age_s": 3600})
    await feed(eng, [inside, outside, closing], SCHEMA)
    await drain(eng)

    by_notice = {e["notice_id"]: e for e in ledger(whatsapp.url)["entries"]}
    assert set(by_notice) == {inside.notice_id, outside.notice_id, closing.notice_id}
    assert by_notice[inside.notice_id]["details"]["type"] == "text"
    assert by_notice[inside.notice_id]["content"] == "Reply PAY to get a link."
    for n in (outside, closing):
        assert by_notice[n.notice_id]["details"]["type"] == "template"
        assert by_notice[n.notice_id]["details"]["template"] == "arrears_help"
        assert by_notice[n.notice_id]["details"]["params"] == ["Arrears Collections"]
    st = await states(eng.engine, SCHEMA)
    assert {s["state"] for s in st.values()} == {"sent"}
    # chosen at render time, not by trying a text first: no send was refused
    assert emulator_stats(whatsapp.url)["by_status"] == {"200": 3}
    async with eng.engine.connect() as c:
        stored = {
            r.notice_id: r.rendered
            for r in await c.execute(text(f"SELECT notice_id, rendered FROM {SCHEMA}.deliveries"))
        }
    rendered = {nid: r["type"] for nid, r in stored.items()}
    assert rendered == {
        inside.notice_id: "text",
        outside.notice_id: "template",
        closing.notice_id: "template",
    }
    # stored sealed: the text body and the template parameters; the template's name stays readable
    assert cipher.is_sealed(stored[inside.notice_id]["text"]["body"])
    assert "Reply PAY" not in json.dumps(stored[inside.notice_id])
    template = stored[outside.notice_id]["template"]
    assert template["name"] == "arrears_help"
    [param] = template["components"][0]["parameters"]
    assert param["type"] == "text" and cipher.is_sealed(param["text"])


async def test_text_refused_as_outside_the_window_goes_as_its_template_once(
    whatsapp: EmulatorServer, make: Callable[..., DeliveryEngine]
) -> None:
    """Our clock says the window is open, Meta's says it closed (131047): the same send falls back to the
    answer's template; the customer gets one message."""
    eng = make()
    n = wa_notice(purpose="opt_out_confirmation", text="You will get no more messages.", due_at=utcnow())
    await feed(eng, [n], SCHEMA)
    await drain(eng)
    led = ledger(whatsapp.url)
    assert led["count"] == 1 and led["entries"][0]["details"]["template"] == "arrears_opt_out_confirmed"
    assert (await states(eng.engine, SCHEMA))[n.notice_id]["state"] == "sent"
    stats = emulator_stats(whatsapp.url)
    assert stats["by_status"] == {"400": 1, "200": 1}  # the refused text, then the template


async def test_answer_outside_the_window_without_a_template_fails(
    whatsapp: EmulatorServer, make: Callable[..., DeliveryEngine], tmp_path: Path
) -> None:
    mapping = tmp_path / "no-answers.yaml"
    mapping.write_text(
        Path(__file__)
        .parents[2]
        .joinpath("services/dispatcher-whatsapp/src/arrears_dispatcher_whatsapp/templates/whatsapp.yaml")
        .read_text()
        .split("\nanswers:")[0]
    )
    eng = make(whatsapp_templates_file=str(mapping))
    n = wa_notice(purpose="help", text="Help text", due_at=utcnow() - timedelta(days=2))
    await feed(eng, [n], SCHEMA)
    await drain(eng)
    [ev] = await message_sent_events(eng.engine, SCHEMA)
    assert ev["status"] == "failed" and "outside the 24-hour customer-service window" in ev["reason"]
    assert ledger(whatsapp.url)["count"] == 0


@pytest.mark.parametrize(
    "fault",
    [
        {"accept_then_drop": {"next": 1}},  # accepted, then the connection drops mid-answer
        {"timeout": {"next": 1, "hang_s": 1.0, "process_after": True}},  # we time out, Meta accepts later
    ],
    ids=["dropped-answer", "timeout-then-accepted"],
)
async def test_in_doubt_send_is_dead_lettered_not_resent(
    whatsapp: EmulatorServer, make: Callable[..., DeliveryEngine], fault: dict[str, Any]
) -> None:
    control(whatsapp.url, "POST", "faults", fault)
    eng = make(whatsapp_timeout_s=0.4)
    n = wa_notice()
    await feed(eng, [n], SCHEMA)
    assert await eng.process_one()
    assert (await states(eng.engine, SCHEMA))[n.notice_id]["state"] == "sending"  # in doubt
    deadline = time.monotonic() + 5
    while ledger(whatsapp.url)["count"] == 0:  # Meta did take it
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.1)
    assert await eng.reconcile_in_doubt() == 1
    st = (await states(eng.engine, SCHEMA))[n.notice_id]
    assert st["state"] == "failed" and "cannot be reconciled" in st["last_error"]
    await asyncio.sleep(1.1)
    assert await eng.reconcile_in_doubt() == 0
    await drain(eng)
    assert ledger(whatsapp.url)["count"] == 1  # never resent
    [ev] = await message_sent_events(eng.engine, SCHEMA)
    assert ev["status"] == "failed" and "not resent" in ev["reason"]
    assert len(await outbox(eng, eng.dlq_topic)) == 1  # for a person to check and replay


# -- webhooks ------------------------------------------------------------------------------------------------
class Collected:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: list[InboundMessage | StatusUpdate] = []

    async def add(self, item: InboundMessage | StatusUpdate) -> None:
        with self.lock:
            self.items.append(item)

    async def wait(self, predicate: Callable[[list[Any]], bool], timeout_s: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self.items):
                    return list(self.items)
            await asyncio.sleep(0.02)
        raise AssertionError(f"webhooks not received: {self.items}")


@pytest.fixture
def receiver() -> Iterator[tuple[str, Collected]]:
    collected = Collected()
    app = FastAPI()
    app.include_router(make_router(collected.add, collected.add, APP_SECRET, VERIFY_TOKEN))
    with EmulatorServer(app) as srv:
        yield srv.url + "/webhooks/whatsapp", collected


def test_webhook_router_accepts_a_signed_delivery_and_refuses_a_bad_signature(
    receiver: tuple[str, Collected],
) -> None:
    url, collected = receiver
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": PHONE_NUMBER_ID,
                            },
                            "statuses": [
                                {
                                    "id": "wamid.X1",
                                    "status": "failed",
                                    "timestamp": "1767225600",
                                    "recipient_id": "15550123456",
                                    "biz_opaque_callback_data": "A-1:p1:v1:s1:c0:whatsapp",
                                    "errors": [
                                        {
                                            "code": 131026,
                                            "title": "Message undeliverable",
                                            "error_data": {"details": "Message Undeliverable."},
                                        }
                                    ],
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    body = json.dumps(payload).encode()
    good = signature(APP_SECRET, body)
    assert good == "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"content-type": "application/json"}
    for bad in (None, "sha256=" + "0" * 64, "sha1=" + good[7:], signature("other-secret", body)):
        r = httpx.post(
            url, content=body, headers={**headers, **({"X-Hub-Signature-256": bad} if bad else {})}
        )
        assert r.status_code == 403, bad
    tampered = httpx.post(
        url, content=body.replace(b"failed", b"sent"), headers={**headers, "X-Hub-Signature-256": good}
    )
    assert tampered.status_code == 403
    assert collected.items == []

    r = httpx.post(url, content=body, headers={**headers, "X-Hub-Signature-256": good})
    assert r.status_code == 200 and r.json() == {"received": 1}
    [status] = collected.items
    assert isinstance(status, StatusUpdate)
    assert status.wamid == "wamid.X1" and status.notice_id == "A-1:p1:v1:s1:c0:whatsapp"
    assert status.unreachable and status.error_codes == (131026,)
    assert status.timestamp == datetime(2026, 1, 1, tzinfo=UTC)

    unreadable = b'{"object": "page"}'
    r = httpx.post(
        url, content=unreadable, headers={**headers, "X-Hub-Signature-256": signature(APP_SECRET, unreadable)}
    )
    assert r.status_code == 400

    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    ok = httpx.get(url, params=params)
    assert ok.status_code == 200 and ok.text == "1158201444"
    assert httpx.get(url, params={**params, "hub.verify_token": "wrong"}).status_code == 403
    assert httpx.get(url, params={**params, "hub.mode": "unsubscribe"}).status_code == 403


async def test_status_webhooks_name_the_notice(
    whatsapp: EmulatorServer, make: Callable[..., DeliveryEngine], receiver: tuple[str, Collected]
) -> None:
    """End to end: the emulator's signed status webhooks reach the router, and carry our notice id
    (biz_opaque_callback_data), for a delivered message and one to a number not on WhatsApp."""
    url, collected = receiver
    control(whatsapp.url, "PUT", "webhook", {"url": url, "verify_token": VERIFY_TOKEN})
    gone = phone()
    control(whatsapp.url, "PUT", "numbers", {"not_on_whatsapp": [gone]})
    eng = make()
    ok, unreachable = wa_notice(), wa_notice(to=gone)
    await feed(eng, [ok, unreachable], SCHEMA)
    await drain(eng)
    assert {s["state"] for s in (await states(eng.engine, SCHEMA)).values()} == {"sent"}  # both accepted

    def arrived(items: list[Any]) -> bool:
        return {(i.notice_id, i.status) for i in items} >= {
            (ok.notice_id, "sent"),
            (ok.notice_id, "delivered"),
            (unreachable.notice_id, "failed"),
        }

    items = await collected.wait(arrived)
    [failed] = [i for i in items if i.status == "failed"]
    assert failed.unreachable and failed.recipient_id == gone.lstrip("+")
    sent = {e["notice_id"]: e["provider_message_id"] for e in await message_sent_events(eng.engine, SCHEMA)}
    assert failed.wamid == sent[unreachable.notice_id]


# -- start-up ------------------------------------------------------------------------------------------------
def test_start_up_refuses_missing_credentials_and_a_broken_mapping(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PHONE_NUMBER_ID"):
        build_engine(WhatsAppSettings(service_name=SERVICE, whatsapp_access_token="t"))
    with pytest.raises(ValueError, match="ACCESS_TOKEN"):
        build_engine(WhatsAppSettings(service_name=SERVICE, whatsapp_phone_number_id="1"))
    no_final = tmp_path / "no-final.yaml"
    no_final.write_text(
        "dunning:\n  reminder: {en: {name: a, language: en_US}}\n  firm: {en: {name: b, language: en_US}}\n"
    )
    settings = WhatsAppSettings(
        service_name=SERVICE,
        whatsapp_access_token="t",
        whatsapp_phone_number_id="1",
        whatsapp_templates_file=str(no_final),
    )
    with pytest.raises(ValueError, match="no template for tier 'final'"):
        build_engine(settings)
    unknown_param = tmp_path / "unknown-param.yaml"
    unknown_param.write_text("dunning:\n  reminder: {en: {name: a, language: en_US, params: [balance]}}\n")
    with pytest.raises(ValueError, match="unknown parameter"):
        build_engine(settings.model_copy(update={"whatsapp_templates_file": str(unknown_param)}))
    engine = build_engine(
        WhatsAppSettings(service_name=SERVICE, whatsapp_access_token="t", whatsapp_phone_number_id="1")
    )
    assert engine.channel.channel == WHATSAPP and engine.channel.provider == "whatsapp-cloud"
