"""The Checkout Sessions emulator through the real `stripe` library: sessions created, retrieved, expired;
Stripe's errors (auth, params, idempotency conflicts, 429, injected 5xx); the hosted page pays once however
often it is submitted; the signed webhooks verify with ingest's own check and parse into one payment, and
are retried until the endpoint answers 2xx."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import stripe
from arrears_emulators.checkout.forms import FormError, decode
from arrears_emulators.common import EmulatorServer
from arrears_ingest.payments import service as payments
from arrears_ingest.payments.models import StripeEvent
from arrears_ingest.payments.signatures import InvalidSignature, verify_stripe
from fastapi import FastAPI, Request, Response

KEY = "sk_test_portal_tests"
WHSEC = "whsec_portal_tests_secret"


class Receiver:
    """A webhook endpoint that verifies like ingest and fails the first `fail_first` deliveries."""

    def __init__(self) -> None:
        self.fail_first = 0
        self.received: list[tuple[bytes, str | None]] = []
        self.app = FastAPI()

        @self.app.post("/hook")
        async def hook(request: Request) -> Response:
            body = await request.body()
            self.received.append((body, request.headers.get("stripe-signature")))
            if self.fail_first > 0:
                self.fail_first -= 1
                return Response(status_code=503)
            return Response(status_code=200)


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    r = Receiver()
    with EmulatorServer(r.app) as s:
        yield r, s.url


@pytest.fixture
def emulator(receiver: tuple[Receiver, str], checkout_emulator: Callable[..., str]) -> str:
    r, url = receiver
    r.received.clear()
    r.fail_first = 0
    return checkout_emulator(
        secret_key=KEY, webhook_url=f"{url}/hook", webhook_secret=WHSEC, webhook_initial_backoff_s=0.05
    )


def client(url: str, key: str = KEY) -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": url}, max_network_retries=0)


def create(url: str, **extra: Any) -> Any:
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {"currency": "usd", "unit_amount": 4500, "product_data": {"name": "Invoice 7"}},
                "quantity": 1,
            }
        ],
        "client_reference_id": "ACC-1",
        "metadata": {"account_id": "ACC-1", "visit": "v1"},
        "payment_intent_data": {"metadata": {"account_id": "ACC-1"}},
        "success_url": "https://portal.test/portal/paid?session={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://portal.test/portal/account",
    }
    params.update(extra)
    options = {"idempotency_key": params.pop("idempotency_key")} if "idempotency_key" in params else None
    return client(url).v1.checkout.sessions.create(params, options)  # type: ignore[arg-type]


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_form_decoding_nests_like_stripe() -> None:
    got = decode(b"a=1&metadata[k]=v&line_items[1][q]=2&line_items[0][q]=1&expand[]=x&expand[]=y")
    assert got == {
        "a": "1",
        "metadata": {"k": "v"},
        "line_items": [{"q": "1"}, {"q": "2"}],
        "expand": ["x", "y"],
    }
    with pytest.raises(FormError):
        decode(b"a[b=1")
    with pytest.raises(FormError):
        decode(b"a=1&a[b]=2")


def test_create_and_retrieve(emulator: str) -> None:
    s = create(emulator)
    assert s.id.startswith("cs_test_") and s.status == "open" and s.payment_status == "unpaid"
    assert s.amount_total == 4500 and s.currency == "usd" and s.client_reference_id == "ACC-1"
    assert s.metadata["account_id"] == "ACC-1" and s.url == f"{emulator}/c/pay/{s.id}"
    got = client(emulator).v1.checkout.sessions.retrieve(s.id, {"expand": ["line_items"]})
    assert got.id == s.id and got.line_items is not None and got.line_items.data[0].description == "Invoice 7"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client(emulator).v1.checkout.sessions.retrieve("cs_test_nope")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"


def test_errors_as_stripe_answers_them(emulator: str) -> None:
    with pytest.raises(stripe.AuthenticationError):
        client(emulator, "sk_test_wrong").v1.checkout.sessions.create({"mode": "payment"})
    with pytest.raises(stripe.InvalidRequestError) as no_items:
        client(emulator).v1.checkout.sessions.create({"mode": "payment"})
    assert no_items.value.param == "line_items"
    with pytest.raises(stripe.InvalidRequestError) as small:
        create(
            emulator,
            line_items=[
                {
                    "price_data": {"currency": "usd", "unit_amount": 10, "product_data": {"name": "x"}},
                    "quantity": 1,
                }
            ],
        )
    assert small.value.code == "amount_too_small"
    with pytest.raises(stripe.InvalidRequestError):
        create(emulator, mode="subscription")
    # the emulator's shorthand: amount + currency make one line item
    s = create(emulator, line_items=None, amount=1234, currency="eur")
    assert s.amount_total == 1234 and s.currency == "eur"
    # bearer auth works as well as basic
    r = httpx.get(f"{emulator}/v1/checkout/sessions/{s.id}", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and r.json()["id"] == s.id


def test_idempotency_key(emulator: str) -> None:
    a = create(emulator, idempotency_key="visit-1:4500:n1")
    b = create(emulator, idempotency_key="visit-1:4500:n1")
    assert a.id == b.id
    with pytest.raises(stripe.IdempotencyError):
        create(emulator, idempotency_key="visit-1:4500:n1", client_reference_id="ACC-2")
    sessions = httpx.get(f"{emulator}/_emulator/sessions").json()
    assert len(sessions) == 1


def test_faults_and_rate_limit(emulator: str) -> None:
    httpx.post(
        f"{emulator}/_emulator/faults", json={"error_5xx": {"next": 1, "status": 500}}
    ).raise_for_status()
    with pytest.raises(stripe.APIError) as e5:
        create(emulator)
    assert e5.value.http_status == 500
    httpx.put(f"{emulator}/_emulator/limits", json={"rate": 1, "burst": 1}).raise_for_status()
    create(emulator)
    with pytest.raises(stripe.RateLimitError):
        create(emulator)


def test_pay_once_and_signed_webhooks(emulator: str, receiver: tuple[Receiver, str]) -> None:
    r, _ = receiver
    r.fail_first = 2  # the endpoint fails twice; the emulator retries
    s = create(emulator)
    page = httpx.get(s.url)
    assert page.status_code == 200 and "45.00 USD" in page.text and "<script" not in page.text
    declined = httpx.post(s.url, data={"card_number": "4000 0000 0000 0002"})
    assert declined.status_code == 402 and "declined" in declined.text
    paid = httpx.post(s.url, data={"card_number": "4242 4242 4242 4242"})
    assert paid.status_code == 303
    assert paid.headers["location"] == f"https://portal.test/portal/paid?session={s.id}"
    again = httpx.post(s.url, data={"card_number": "4242 4242 4242 4242"})  # a double submit
    assert again.status_code == 303
    got = client(emulator).v1.checkout.sessions.retrieve(s.id)
    assert got.status == "complete" and got.payment_status == "paid" and got.payment_intent
    ledger = httpx.get(f"{emulator}/_emulator/ledger").json()
    payments_seen = [e for e in ledger["entries"] if e["operation"] == "payment"]
    assert len(payments_seen) == 1 and payments_seen[0]["details"]["amount"] == 4500

    wait_for(lambda: httpx.get(f"{emulator}/_emulator/webhooks").json()["webhooks_delivered"] == 2)
    hooks = httpx.get(f"{emulator}/_emulator/webhooks").json()
    assert hooks["webhooks_failed_attempts"] == 2
    assert sorted(e["type"] for e in hooks["events"]) == [
        "checkout.session.completed",
        "payment_intent.succeeded",
    ]
    parsed = []
    for body, signature in r.received:
        verify_stripe(body, signature, WHSEC, 300)  # exactly as ingest verifies
        with pytest.raises(InvalidSignature):
            verify_stripe(body + b" ", signature, WHSEC, 300)
        parsed.append(payments.parse_stripe(StripeEvent.model_validate_json(body)))
    assert len(r.received) == 4  # 2 failed + 2 delivered
    ids = {(p.payment_id, p.account_id, p.amount_minor, p.currency) for p in parsed if p is not None}
    assert ids == {(got.payment_intent, "ACC-1", 4500, "USD")}  # both events are one payment


def test_expire_and_expired_page(emulator: str) -> None:
    s = create(emulator)
    expired = client(emulator).v1.checkout.sessions.expire(s.id)
    assert expired.status == "expired"
    assert httpx.get(f"{emulator}/c/pay/{s.id}").status_code == 410
    assert httpx.post(f"{emulator}/c/pay/{s.id}", data={"card_number": "4242424242424242"}).status_code == 410
    assert not [
        e for e in httpx.get(f"{emulator}/_emulator/ledger").json()["entries"] if e["operation"] == "payment"
    ]
    with pytest.raises(stripe.InvalidRequestError):
        client(emulator).v1.checkout.sessions.expire(s.id)
    assert not re.search(r"cs_test_", httpx.get(f"{emulator}/c/pay/cs_test_unknown").text.split("<body>")[1])
