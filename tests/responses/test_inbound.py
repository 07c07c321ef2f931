"""Inbound adapters (entry points `arrears.inbound`) mounted on the real responses service (real broker, real
Postgres): the WhatsApp package's adapter, signed the way Meta signs, through the channel-generic reply and
failure paths. Responses itself never names the channel."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from arrears_responses.__main__ import definition
from arrears_responses.contacts.lookup import address_index
from arrears_responses.inbound.adapters import inbound_router
from arrears_responses.settings import ResponsesSettings
from arrears_shared.events import DeliveryStatus, Intent, MessageSent, ReplyReceived, Tier
from arrears_shared.service import ServiceHost
from arrears_shared.vault.cipher import is_sealed
from sqlalchemy import text

from .test_webhooks import (
    collect_notices,
    collect_replies,
    failures_published,
    send_message_sent,
    service_engine,
    wait_for,
)

APP_SECRET = "whatsapp-app-secret-0123456789abcdef"
VERIFY_TOKEN = "whatsapp-verify-token-42"
PATH = "/webhooks/whatsapp"
WA_ENV = {"ARREARS_WHATSAPP_APP_SECRET": APP_SECRET, "ARREARS_WHATSAPP_VERIFY_TOKEN": VERIFY_TOKEN}


def signed(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    """Headers as Meta sends them: X-Hub-Signature-256 = sha256=<hex HMAC-SHA256 of the raw body>."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "content-type": "application/json"}


def notification(
    *, messages: Sequence[dict[str, Any]] = (), statuses: Sequence[dict[str, Any]] = ()
) -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": "100000000000000"},
        "contacts": [{"wa_id": m["from"], "profile": {"name": "Customer"}} for m in messages],
        "messages": list(messages),
        "statuses": list(statuses),
    }
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [{"id": "WABA1", "changes": [{"field": "messages", "value": value}]}],
        }
    ).encode()


def text_message(number: str, body: str, ts: int, wamid: str | None = None) -> dict[str, Any]:
    return {
        "from": number.lstrip("+"),
        "id": wamid or f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(ts),
        "type": "text",
        "text": {"body": body},
    }


def failed_status(wamid: str, number: str, notice: str, code: int) -> dict[str, Any]:
    return {
        "id": wamid,
        "status": "failed",
        "timestamp": str(int(time.time())),
        "recipient_id": number.lstrip("+"),
        "biz_opaque_callback_data": notice,
        "errors": [
            {
                "code": code,
                "title": "Message undeliverable" if code == 131026 else "Something went wrong",
                "error_data": {"details": "Message Undeliverable."},
            }
        ],
    }


def unique_number() -> str:
    return "+1628" + str(uuid.uuid4().int)[:7]


def whatsapp_sent(account: str, number: str, notice: str, wamid: str | None = None) -> MessageSent:
    return MessageSent(
        account_id=account,
        notice_id=notice,
        channel="whatsapp",
        status=DeliveryStatus.SENT,
        provider="whatsapp-cloud",
        provider_message_id=wamid or f"wamid.{uuid.uuid4().hex}",
        to=number,
        tier=Tier.FIRM,
        step=2,
        sent_at=datetime.now(UTC),
    )


@pytest.fixture(scope="module")
async def service(
    broker: Any, fresh_database_url: Callable[..., str]
) -> AsyncIterator[tuple[ServiceHost, httpx.AsyncClient, Any]]:
    settings = ResponsesSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=fresh_database_url("responses_inbound"),
        runner_poll_timeout_ms=100,
        outbox_poll_s=0.02,
    )
    mp = pytest.MonkeyPatch()
    for k, v in WA_ENV.items():  # the adapter reads its own settings when the app is built
        mp.setenv(k, v)
    try:
        host = ServiceHost(definition(settings))
        app = host.build_app()
    finally:
        mp.undo()
    await host.start()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://responses"
    ) as client:
        yield host, client, app
    await host.stop()


async def index_whatsapp_contact(
    host: ServiceHost, broker: Any, account: str, number: str, notice: str, wamid: str | None = None
) -> None:
    await send_message_sent(broker.bootstrap_servers, whatsapp_sent(account, number, notice, wamid))

    async def indexed() -> bool:
        async with host.ctx.engine.connect() as c:  # type: ignore[union-attr]
            row = await c.execute(
                text(
                    "SELECT notice_id, address FROM responses.contacts"
                    " WHERE channel = 'whatsapp' AND address_bidx = :b"
                ),
                {"b": address_index("whatsapp", number)},
            )
            found = row.first()
            if found is None or found.notice_id != notice:
                return False
            assert is_sealed(found.address) and number not in found.address  # found by its blind index only
            return True

    await wait_for(indexed)


async def stored_replies(host: ServiceHost, wamid: str) -> list[Any]:
    async with host.ctx.engine.connect() as c:  # type: ignore[union-attr]
        rows = await c.execute(
            text(
                "SELECT reply_id, channel, rule, intent FROM responses.replies WHERE provider_message_id = :p"
            ),
            {"p": wamid},
        )
        return list(rows.all())


async def test_customer_text_from_a_known_number_is_a_reply_on_whatsapp(service, broker) -> None:
    host, client, _ = service
    account, number, notice = f"PME-W-{uuid.uuid4().hex[:6]}", unique_number(), f"n-wa-{uuid.uuid4().hex[:6]}"
    await index_whatsapp_contact(host, broker, account, number, notice)
    msg = text_message(number, "I'll pay $200 on Friday", int(time.time()) - 60)
    body = notification(messages=[msg])
    r = await client.post(PATH, content=body, headers=signed(body))
    assert r.status_code == 200 and r.json() == {"received": 1}, r.text
    # Meta delivers the same notification again: nothing new
    assert (await client.post(PATH, content=body, headers=signed(body))).status_code == 200

    envs = await collect_replies(broker.bootstrap_servers, account, service_engine(host))
    assert len(envs) == 1
    ev = envs[0].data
    assert isinstance(ev, ReplyReceived)
    assert (ev.channel, ev.from_address, ev.provider_message_id) == ("whatsapp", number, msg["id"])
    assert ev.reply_id == f"whatsapp-cloud:{msg['id']}" and ev.in_reply_to_notice_id == notice
    assert ev.intent is Intent.PROMISE_TO_PAY and ev.promise_amount_minor == 20_000
    assert ev.received_at == datetime.fromtimestamp(int(msg["timestamp"]), UTC)
    assert len(await stored_replies(host, msg["id"])) == 1


async def test_stop_opts_out_and_is_confirmed_once_on_whatsapp(service, broker) -> None:
    host, client, _ = service
    account, number = f"PME-WS-{uuid.uuid4().hex[:6]}", unique_number()
    await index_whatsapp_contact(host, broker, account, number, "n-wa-stop")
    sent_at = int(time.time()) - 300
    msgs = [
        text_message(number, "HELP", sent_at),
        text_message(number, "STOP", sent_at + 10),
        text_message(number, "Stop WhatsApp!", sent_at + 20),  # the channel's own opt-out words
    ]
    for msg in msgs:
        body = notification(messages=[msg])
        assert (await client.post(PATH, content=body, headers=signed(body))).status_code == 200

    replies = await collect_replies(broker.bootstrap_servers, account, service_engine(host))
    assert [e.data.intent for e in replies] == [Intent.HELP, Intent.OPT_OUT, Intent.OPT_OUT]
    assert {e.data.channel for e in replies} == {"whatsapp"}
    [(_, _, rule, _)] = await stored_replies(host, msgs[2]["id"])
    assert rule == "opt_out_keyword_channel"

    notices = await collect_notices(broker.bootstrap_servers, account, service_engine(host))
    by_purpose = {n.purpose: n for n in notices}
    assert sorted(n.purpose for n in notices) == ["help", "opt_out_confirmation"], notices
    confirmation, help_ = by_purpose["opt_out_confirmation"], by_purpose["help"]
    assert (confirmation.channel, confirmation.to) == ("whatsapp", number)
    assert confirmation.due_at == datetime.fromtimestamp(sent_at + 10, UTC)  # the customer's message time
    assert help_.channel == "whatsapp" and help_.due_at == datetime.fromtimestamp(sent_at, UTC)
    assert confirmation.notice_id == f"{account}:auto:opt_out_confirmation:whatsapp-cloud:{msgs[1]['id']}"
    assert "unsubscribed" in (confirmation.text or "")


@pytest.mark.parametrize(
    ("case", "make_headers"),
    [
        ("missing", lambda body: {"content-type": "application/json"}),
        ("forged", lambda body: signed(body, secret="attacker-secret")),
        ("tampered", lambda body: signed(body.replace(b"STOP", b"HELP"))),
        (
            "garbage",
            lambda body: {"X-Hub-Signature-256": "sha256=nothex", "content-type": "application/json"},
        ),
    ],
)
async def test_a_bad_signature_is_refused_and_stores_nothing(service, case: str, make_headers) -> None:
    host, client, _ = service
    msg = text_message(unique_number(), "STOP", int(time.time()))
    body = notification(messages=[msg])
    r = await client.post(PATH, content=body, headers=make_headers(body))
    assert r.status_code == 403, (case, r.text)
    assert await stored_replies(host, msg["id"]) == []
    # the same body, correctly signed, is accepted (stored unmatched: nobody was messaged at that number)
    assert (await client.post(PATH, content=body, headers=signed(body))).status_code == 200
    [(reply_id, channel, _, intent)] = await stored_replies(host, msg["id"])
    assert (channel, intent) == ("whatsapp", "opt_out") and reply_id.endswith(msg["id"])


async def test_subscription_handshake_and_items_without_words(service) -> None:
    host, client, _ = service
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
    ok = await client.get(PATH, params=params)
    assert ok.status_code == 200 and ok.text == "1158201444"
    assert (await client.get(PATH, params=params | {"hub.verify_token": "wrong"})).status_code == 403
    # a reaction and a `delivered` status are read (200) and change nothing
    number, wamid = unique_number(), f"wamid.{uuid.uuid4().hex}"
    reaction = {
        "from": number.lstrip("+"),
        "id": wamid,
        "timestamp": str(int(time.time())),
        "type": "reaction",
        "reaction": {"message_id": "wamid.x", "emoji": "👍"},
    }
    delivered = failed_status(f"wamid.{uuid.uuid4().hex}", number, "n-x", 0) | {
        "status": "delivered",
        "errors": [],
    }
    body = notification(messages=[reaction], statuses=[delivered])
    r = await client.post(PATH, content=body, headers=signed(body))
    assert r.status_code == 200 and r.json() == {"received": 2}
    assert await stored_replies(host, wamid) == []
    assert await failures_published(host, delivered["id"]) == []


async def test_failed_status_publishes_one_failed_message_sent_for_the_notice(service, broker) -> None:
    host, client, _ = service
    account, number, wamid = f"PME-WF-{uuid.uuid4().hex[:6]}", unique_number(), f"wamid.{uuid.uuid4().hex}"
    notice = f"n-wa-fail-{uuid.uuid4().hex[:6]}"
    await index_whatsapp_contact(host, broker, account, number, notice, wamid)
    body = notification(statuses=[failed_status(wamid, number, notice, 131026)])  # not on WhatsApp
    for _ in range(2):  # Meta delivers it twice
        assert (await client.post(PATH, content=body, headers=signed(body))).status_code == 200
    [env] = await failures_published(host, wamid)
    assert env.id == f"whatsapp-failed:{wamid}" and env.subject == account
    ev = env.data
    assert (ev.status, ev.permanent, ev.channel, ev.notice_id) == (
        DeliveryStatus.FAILED,
        True,
        "whatsapp",
        notice,
    )
    assert (ev.tier, ev.step, ev.to, ev.provider) == (Tier.FIRM, 2, number, "whatsapp-cloud")
    assert ev.reason is not None and ev.reason.startswith("whatsapp 131026")
    async with host.ctx.engine.connect() as c:  # type: ignore[union-attr]
        row = (
            await c.execute(
                text(
                    "SELECT status, notice_id, channel FROM responses.delivery_status WHERE provider_message_id=:p"
                ),
                {"p": wamid},
            )
        ).one()
    assert tuple(row) == ("failed", notice, "whatsapp")


async def test_failure_before_its_message_sent_is_published_when_it_arrives(service, broker) -> None:
    host, client, _ = service
    account, number, wamid = f"PME-WE-{uuid.uuid4().hex[:6]}", unique_number(), f"wamid.{uuid.uuid4().hex}"
    body = notification(statuses=[failed_status(wamid, number, "n-wa-early", 131000)])  # a Meta-side error
    assert (await client.post(PATH, content=body, headers=signed(body))).status_code == 200
    assert await failures_published(host, wamid) == []
    await index_whatsapp_contact(host, broker, account, number, "n-wa-early", wamid)

    async def published() -> list[Any]:
        return await failures_published(host, wamid)

    [env] = await wait_for(published)
    assert env.data.notice_id == "n-wa-early" and env.data.permanent is False
    assert env.data.channel == "whatsapp"


async def test_webhook_routes_are_public_because_signed(service) -> None:
    _, _, app = service
    doc = app.openapi()
    for method in ("get", "post"):
        op = doc["paths"][PATH][method]
        assert op["x-arrears-permission"] is None and "signature" in op["x-arrears-public"]


def test_an_adapter_without_its_secret_is_skipped_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for k in WA_ENV:
        monkeypatch.delenv(k, raising=False)
    with caplog.at_level(logging.WARNING, logger="arrears_shared.inbound"):
        router = inbound_router(lambda: None)  # type: ignore[arg-type,return-value]
    assert all(getattr(r, "path", "") != PATH for r in router.routes)
    [record] = [r for r in caplog.records if r.getMessage() == "inbound adapter not mounted"]
    assert record.adapter == "whatsapp" and "ARREARS_WHATSAPP_APP_SECRET" in record.reason  # type: ignore[attr-defined]


def test_the_adapter_maps_what_meta_sends_to_the_contract() -> None:
    from arrears_dispatcher_whatsapp.inbound import as_failure, as_reply
    from arrears_dispatcher_whatsapp.webhooks import parse

    mexican = text_message("+5215512345678", "  ya pagué  ", 1_767_225_600, wamid="wamid.MX")
    caption = {k: v for k, v in text_message("+14155550100", "", 1_767_225_600).items() if k != "text"}
    caption |= {"type": "image", "image": {"id": "media-1", "caption": "paid"}}
    pending = failed_status("wamid.T", "+14155550100", "n-1", 131000)
    items = parse(notification(messages=[mexican, caption], statuses=[pending]))
    reply, image, failure = as_reply(items[0]), as_reply(items[1]), as_failure(items[2])  # type: ignore[arg-type]
    assert reply is not None and (reply.from_address, reply.body, reply.to_address) == (
        "+525512345678",
        "ya pagué",
        "+15550001111",
    )
    assert reply.received_at == datetime(2026, 1, 1, tzinfo=UTC) and reply.provider == "whatsapp-cloud"
    assert image is not None and image.body == "paid"
    assert failure is not None and (failure.notice_id, failure.permanent, failure.error_code) == (
        "n-1",
        False,
        "131000",
    )
