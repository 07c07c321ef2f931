"""WhatsApp Cloud API emulator, driven through the production `WhatsAppClient`; its webhooks received by the
production router (`arrears_dispatcher_whatsapp.webhooks.make_router`) and checked byte by byte."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from arrears_dispatcher_whatsapp.graph_client import WhatsAppClient, WindowClosed
from arrears_dispatcher_whatsapp.webhooks import (
    InboundMessage,
    StatusUpdate,
    make_router,
    parse,
    verify_signature,
)
from arrears_emulators.common import EmulatorServer
from arrears_emulators.whatsapp.app import TemplateSpec, WhatsAppConfig, create_app
from arrears_shared.providers.errors import (
    ProviderAuthError,
    ProviderInDoubt,
    ProviderPermanentError,
    ProviderRateLimited,
    ProviderTransientError,
)
from fastapi import FastAPI, Request, Response

TOKEN = "wa-test-token"
PHONE_NUMBER_ID = "106540352242922"
APP_SECRET = "wa-test-app-secret"
VERIFY_TOKEN = "wa-test-verify-token"
NOT_ON_WA = "+15550177777"
CUSTOMER = "+15550123456"
TEMPLATES = {
    "arrears_payment_reminder": TemplateSpec(languages=["en_US", "es_MX"], body_params=3),
    "arrears_no_params": TemplateSpec(languages=["en_US"], body_params=0),
}


@dataclass
class Receiver:
    """What reached the webhook endpoint: raw requests (headers, body) and the router's parsed items."""

    url: str = ""
    raw: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    items: list[InboundMessage | StatusUpdate] = field(default_factory=list)
    fail_next: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        with self.lock:
            self.raw.clear()
            self.items.clear()
            self.fail_next = 0

    async def wait_items(self, count: int, timeout_s: float = 5.0) -> list[InboundMessage | StatusUpdate]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.items) >= count:
                    return list(self.items)
            await asyncio.sleep(0.01)
        raise AssertionError(f"expected {count} webhook item(s), got {self.items}")


@pytest.fixture(scope="module")
def wa_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    app = FastAPI()

    async def on_inbound(m: InboundMessage) -> None:
        with receiver.lock:
            receiver.items.append(m)

    async def on_status(s: StatusUpdate) -> None:
        with receiver.lock:
            receiver.items.append(s)

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Response:
        body = await request.body()
        with receiver.lock:
            if request.method == "POST":
                receiver.raw.append((dict(request.headers), body))
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    return Response(status_code=500)
        response: Response = await call_next(request)
        return response

    app.include_router(make_router(on_inbound, on_status, APP_SECRET, VERIFY_TOKEN))
    with EmulatorServer(app) as server:
        receiver.url = server.url + "/webhooks/whatsapp"
        yield receiver


@pytest.fixture(scope="module")
def wa_server(wa_receiver: Receiver) -> Iterator[EmulatorServer]:
    config = WhatsAppConfig(
        access_token=TOKEN,
        phone_number_id=PHONE_NUMBER_ID,
        app_secret=APP_SECRET,
        webhook_url=wa_receiver.url,
        templates=TEMPLATES,
        not_on_whatsapp={NOT_ON_WA},
        status_delay_ms=10,
        webhook_initial_backoff_s=0.05,
        webhook_max_backoff_s=0.2,
        seed=7,
    )
    with EmulatorServer(create_app(config)) as server:
        yield server


@dataclass
class Control:
    """Synchronous client of the emulator (its ``/_emulator`` control API, and raw API requests)."""

    url: str
    http: httpx.Client

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, path, **kw)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        r = self.http.request(method, f"/_emulator/{path}", json=body)
        r.raise_for_status()
        return r.json()


@pytest.fixture
def wa(wa_server: EmulatorServer, wa_receiver: Receiver) -> Iterator[Control]:
    with httpx.Client(base_url=wa_server.url, timeout=10) as http:
        control = Control(wa_server.url, http)
        control.call("POST", "reset")
        wa_receiver.clear()
        yield control
        control.call("POST", "reset")


@pytest.fixture
async def client(wa: Control) -> AsyncIterator[WhatsAppClient]:
    async with WhatsAppClient(
        access_token=TOKEN, phone_number_id=PHONE_NUMBER_ID, base_url=wa.url, timeout_s=2.0
    ) as c:
        yield c


def ledger(wa: Control) -> dict[str, Any]:
    result: dict[str, Any] = wa.call("GET", "ledger")
    return result


def inject(wa: Control, code: int, *, count: int = 1, status: int | None = None) -> None:
    body: dict[str, Any] = {"code": code, "count": count}
    if status is not None:
        body["status"] = status
    wa.call("POST", "errors", body)


async def test_template_send_is_accepted_and_recorded(wa: Control, client: WhatsAppClient) -> None:
    sent = await client.send_template(
        CUSTOMER,
        "arrears_payment_reminder",
        "en_US",
        ["Jordan", "$250.00", "Acme"],
        biz_opaque_callback_data="N-1",
    )
    assert sent.wamid.startswith("wamid.") and sent.messages[0].message_status == "accepted"
    assert sent.contacts[0].input == CUSTOMER and sent.wa_id == "15550123456"
    led = ledger(wa)
    assert led["count"] == 1 and led["by_notice"] == {"N-1": 1}
    entry = led["entries"][0]
    assert entry["provider_id"] == sent.wamid and not entry["dropped"]
    assert entry["details"]["template"] == "arrears_payment_reminder"
    assert entry["details"]["language"] == "en_US"
    assert entry["details"]["params"] == ["Jordan", "$250.00", "Acme"]
    # a template without parameters needs no components
    await client.send_template(CUSTOMER, "arrears_no_params", "en_US", [])
    assert ledger(wa)["count"] == 2


async def test_status_webhooks_are_signed_and_echo_the_callback_data(
    wa: Control, client: WhatsAppClient, wa_receiver: Receiver
) -> None:
    sent = await client.send_template(
        CUSTOMER, "arrears_payment_reminder", "en_US", ["A", "B", "C"], biz_opaque_callback_data="notice-42"
    )
    items = await wa_receiver.wait_items(2)
    assert [(i.kind, getattr(i, "status", None)) for i in items] == [
        ("status", "sent"),
        ("status", "delivered"),
    ]
    for item in items:
        assert isinstance(item, StatusUpdate)
        assert item.wamid == sent.wamid and item.notice_id == "notice-42"
        assert item.recipient_id == "15550123456" and item.phone_number_id == PHONE_NUMBER_ID
        assert item.pricing_category == "utility" and not item.errors
    with wa_receiver.lock:
        headers, body = wa_receiver.raw[0]
    expected = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["x-hub-signature-256"] == expected
    assert verify_signature(APP_SECRET, body, headers["x-hub-signature-256"])
    assert not verify_signature(APP_SECRET, body + b" ", headers["x-hub-signature-256"])
    assert not verify_signature("another-secret", body, headers["x-hub-signature-256"])
    payload = json.loads(body)
    assert payload["object"] == "whatsapp_business_account"
    value = payload["entry"][0]["changes"][0]["value"]
    assert payload["entry"][0]["changes"][0]["field"] == "messages"
    assert value["metadata"]["phone_number_id"] == PHONE_NUMBER_ID
    assert value["statuses"][0]["biz_opaque_callback_data"] == "notice-42"


async def test_webhooks_are_retried_until_answered_200(
    wa: Control, client: WhatsAppClient, wa_receiver: Receiver
) -> None:
    with wa_receiver.lock:
        wa_receiver.fail_next = 2
    await client.send_template(CUSTOMER, "arrears_no_params", "en_US", [])
    items = await wa_receiver.wait_items(2)
    assert {getattr(i, "status", None) for i in items} == {"sent", "delivered"}
    deadline = time.monotonic() + 5
    while (extra := wa.call("GET", "stats")["extra"])["webhooks_delivered"] < 2:
        assert time.monotonic() < deadline, extra
        await asyncio.sleep(0.02)
    assert extra["webhooks_failed_attempts"] == 2 and extra["webhooks_given_up"] == 0


async def test_invalid_token_is_an_auth_error(wa: Control) -> None:
    async with WhatsAppClient(access_token="wrong", phone_number_id=PHONE_NUMBER_ID, base_url=wa.url) as c:
        with pytest.raises(ProviderAuthError) as exc:
            await c.send_template(CUSTOMER, "arrears_no_params", "en_US", [])
    assert exc.value.status == 401 and exc.value.code == "190"
    assert ledger(wa)["count"] == 0


async def test_template_errors_are_permanent(wa: Control, client: WhatsAppClient) -> None:
    with pytest.raises(ProviderPermanentError) as missing:
        await client.send_template(CUSTOMER, "arrears_unknown", "en_US", [])
    assert missing.value.code == "132001" and missing.value.status == 404
    assert "template rejected" in missing.value.reason and "arrears_unknown" in missing.value.reason
    with pytest.raises(ProviderPermanentError) as language:
        await client.send_template(CUSTOMER, "arrears_no_params", "es_MX", [])
    assert language.value.code == "132001" and "es_MX" in language.value.reason
    with pytest.raises(ProviderPermanentError) as count:
        await client.send_template(CUSTOMER, "arrears_payment_reminder", "en_US", ["only", "two"])
    assert count.value.code == "132000" and count.value.status == 400
    assert "(2) does not match the expected number of params (3)" in count.value.reason
    with pytest.raises(ProviderPermanentError) as newline:
        await client.send_template(CUSTOMER, "arrears_payment_reminder", "en_US", ["a\nb", "c", "d"])
    assert newline.value.code == "131009"
    assert ledger(wa)["count"] == 0


async def test_invalid_recipient_is_permanent(wa: Control, client: WhatsAppClient) -> None:
    with pytest.raises(ProviderPermanentError) as exc:
        await client.send_template("12", "arrears_no_params", "en_US", [])
    assert exc.value.code == "100" and exc.value.status == 400
    assert ledger(wa)["count"] == 0


async def test_text_needs_the_customer_service_window(
    wa: Control, client: WhatsAppClient, wa_receiver: Receiver
) -> None:
    with pytest.raises(WindowClosed) as closed:
        await client.send_text(CUSTOMER, "Thanks for your message")
    assert closed.value.code == "131047" and closed.value.status == 400
    assert isinstance(closed.value, ProviderPermanentError)
    # a customer message 25 hours ago does not open it either
    wa.call("POST", "inbound", {"from": CUSTOMER, "text": "old", "age_s": 25 * 3600})
    with pytest.raises(WindowClosed):
        await client.send_text(CUSTOMER, "Thanks for your message")
    # one 23 hours ago does; templates never needed it
    opened = wa.call("POST", "inbound", {"from": CUSTOMER, "text": "hi", "age_s": 23 * 3600})
    assert opened["window_open"] is True
    sent = await client.send_text(CUSTOMER, "Thanks for your message", biz_opaque_callback_data="answer-1")
    assert sent.wamid.startswith("wamid.")
    led = ledger(wa)
    assert led["count"] == 1 and led["entries"][0]["content"] == "Thanks for your message"
    assert led["entries"][0]["details"]["type"] == "text"
    # the window is per customer
    with pytest.raises(WindowClosed):
        await client.send_text("+15550999999", "hello")


async def test_inbound_message_reaches_the_webhook(
    wa: Control, client: WhatsAppClient, wa_receiver: Receiver
) -> None:
    answer = wa.call("POST", "inbound", {"from": CUSTOMER, "text": "I paid yesterday", "name": "Jordan Test"})
    [item] = await wa_receiver.wait_items(1)
    assert isinstance(item, InboundMessage)
    assert item.wamid == answer["message_id"] and item.wa_id == "15550123456" and item.from_e164 == CUSTOMER
    assert item.text == "I paid yesterday" and item.type == "text" and item.profile_name == "Jordan Test"
    assert abs(item.timestamp.timestamp() - time.time()) < 5
    with wa_receiver.lock:
        headers, body = wa_receiver.raw[0]
    assert verify_signature(APP_SECRET, body, headers["x-hub-signature-256"])
    assert parse(body) == [item]


async def test_number_not_on_whatsapp_is_accepted_then_fails(
    wa: Control, client: WhatsAppClient, wa_receiver: Receiver
) -> None:
    sent = await client.send_template(
        NOT_ON_WA, "arrears_no_params", "en_US", [], biz_opaque_callback_data="N-9"
    )
    assert sent.wamid.startswith("wamid.")
    [item] = await wa_receiver.wait_items(1)
    assert isinstance(item, StatusUpdate)
    assert item.status == "failed" and item.error_codes == (131026,) and item.unreachable
    assert item.notice_id == "N-9" and item.reason and "131026" in item.reason
    await asyncio.sleep(0.1)
    assert len(wa_receiver.items) == 1  # no sent / delivered after a failure


async def test_throughput_rate_limit_130429(wa: Control, client: WhatsAppClient) -> None:
    wa.call("PUT", "limits", {"rate": 1.0, "burst": 1.0})
    await client.send_template(CUSTOMER, "arrears_no_params", "en_US", [])
    with pytest.raises(ProviderRateLimited) as limited:
        await client.send_template(CUSTOMER, "arrears_no_params", "en_US", [])
    # Meta answers its rate limits with HTTP 400: classified by code, and no Retry-After -> the code's default
    assert limited.value.status == 400 and limited.value.reason == "130429"
    assert limited.value.retry_after_s == 1.0
    assert ledger(wa)["count"] == 1


async def test_injected_rate_limits_with_either_status(wa: Control, client: WhatsAppClient) -> None:
    inject(wa, 130429, status=429)
    inject(wa, 131056)
    with pytest.raises(ProviderRateLimited) as throughput:
        await client.send_template(CUSTOMER, "arrears_no_params", "en_US", [])
    assert throughput.value.status == 429 and throughput.value.reason == "130429"
    with pytest.raises(ProviderRateLimited) as pair:
        await client.send_template(CUSTOMER, "arrears_no_params", "en_US", [])
    assert pair.value.status == 400 and pair.value.reason == "131056" and pair.value.retry_after_s == 6.0
    await client.send_template(CUSTOMER, "arrears_no_params", "en_US", [])  # the injections are used up
    assert ledger(wa)["count"] == 1


async def test_pair_rate_limit_131056() -> None:
    config = WhatsAppConfig(
        access_token=TOKEN, phone_number_id=PHONE_NUMBER_ID, templates=TEMPLATES, pair_burst=2
    )
    with EmulatorServer(create_app(config)) as server:
        async with WhatsAppClient(
            access_token=TOKEN, phone_number_id=PHONE_NUMBER_ID, base_url=server.url
        ) as c:
            for _ in range(2):
                await c.send_template(CUSTOMER, "arrears_no_params", "en_US", [])
            with pytest.raises(ProviderRateLimited) as exc:
                await c.send_template(CUSTOMER, "arrears_no_params", "en_US", [])
            assert exc.value.reason == "131056"
            await c.send_template(
                "+15550111111", "arrears_no_params", "en_US", []
            )  # another customer is fine
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert ledger(Control(server.url, http))["count"] == 3


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        (131000, None, ProviderTransientError),
        (131016, None, ProviderTransientError),
        (131047, None, WindowClosed),
        (131026, None, ProviderPermanentError),
        (132001, None, ProviderPermanentError),
        (190, None, ProviderAuthError),
        (131000, 502, ProviderInDoubt),
    ],
)
async def test_injected_errors_are_classified(
    wa: Control, client: WhatsAppClient, code: int, status: int | None, expected: type[Exception]
) -> None:
    inject(wa, code, status=status)
    with pytest.raises(expected) as exc:
        await client.send_template(CUSTOMER, "arrears_no_params", "en_US", [])
    assert type(exc.value) is expected
    if isinstance(exc.value, ProviderPermanentError):
        assert exc.value.code == str(code)
    assert ledger(wa)["count"] == 0


async def test_server_fault_5xx_is_transient(wa: Control, client: WhatsAppClient) -> None:
    wa.call("POST", "faults", {"error_5xx": {"next": 1, "status": 503}})
    with pytest.raises(ProviderTransientError) as exc:
        await client.send_template(CUSTOMER, "arrears_no_params", "en_US", [])
    assert exc.value.status == 503
    await client.send_template(CUSTOMER, "arrears_no_params", "en_US", [])
    assert ledger(wa)["count"] == 1


async def test_dropped_answer_after_acceptance_is_in_doubt(wa: Control, client: WhatsAppClient) -> None:
    wa.call("POST", "faults", {"accept_then_drop": {"next": 1}})
    with pytest.raises(ProviderInDoubt):
        await client.send_template(CUSTOMER, "arrears_no_params", "en_US", [], biz_opaque_callback_data="N-7")
    led = ledger(wa)
    assert led["count"] == 1 and led["entries"][0]["dropped"] and led["by_notice"] == {"N-7": 1}


async def test_timeout_then_late_acceptance_is_in_doubt(wa: Control) -> None:
    wa.call("POST", "faults", {"timeout": {"next": 1, "hang_s": 1.0, "process_after": True}})
    async with WhatsAppClient(
        access_token=TOKEN, phone_number_id=PHONE_NUMBER_ID, base_url=wa.url, timeout_s=0.3
    ) as c:
        with pytest.raises(ProviderInDoubt):
            await c.send_template(CUSTOMER, "arrears_no_params", "en_US", [])
    deadline = time.monotonic() + 5
    while ledger(wa)["count"] == 0:  # the emulator accepted it after the client gave up
        assert time.monotonic() < deadline, "the late send never reached the ledger"
        await asyncio.sleep(0.05)


async def test_unreachable_api_is_transient() -> None:
    async with WhatsAppClient(
        access_token=TOKEN, phone_number_id=PHONE_NUMBER_ID, base_url="http://127.0.0.1:9", timeout_s=1.0
    ) as c:
        with pytest.raises(ProviderTransientError):
            await c.send_template(CUSTOMER, "arrears_no_params", "en_US", [])


async def test_unknown_phone_number_id_and_version(wa: Control) -> None:
    async with WhatsAppClient(access_token=TOKEN, phone_number_id="999", base_url=wa.url) as c:
        with pytest.raises(ProviderPermanentError) as exc:
            await c.send_template(CUSTOMER, "arrears_no_params", "en_US", [])
    assert exc.value.code == "100" and "999" in exc.value.reason
    r = wa.request(
        "POST", f"/latest/{PHONE_NUMBER_ID}/messages", headers={"Authorization": f"Bearer {TOKEN}"}, json={}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == 100


def test_subscription_handshake_and_reset(wa: Control, wa_receiver: Receiver) -> None:
    ok = wa.request("PUT", "/_emulator/webhook", json={"url": wa_receiver.url, "verify_token": VERIFY_TOKEN})
    assert ok.status_code == 200 and ok.json()["verified"] is True
    bad = wa.request("PUT", "/_emulator/webhook", json={"url": wa_receiver.url, "verify_token": "wrong"})
    assert bad.status_code == 400 and bad.json()["status"] == 403
    wa.call("POST", "inbound", {"from": CUSTOMER})
    assert wa.call("GET", "stats")["extra"]["open_windows"] == 1
    wa.call("POST", "reset")
    assert wa.call("GET", "stats")["extra"]["open_windows"] == 0
    assert wa.call("GET", "events") == []
