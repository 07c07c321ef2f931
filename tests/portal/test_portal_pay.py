"""Paying from the portal against the checkout emulator (a real HTTP server speaking Stripe's Checkout
Sessions API): pay in full or in part, amounts checked (> 0, <= balance, >= the minimum), a double click is
one gateway session, the gateway's 5xx is retried with the same idempotency key, a gateway outage is a
polite page, every started checkout is audited once, CSRF is enforced, and the success page only speaks of
the visit's own payments. The money reaching the account (webhook -> ingest -> account-changed) is covered
end to end by test_portal_pay_browser.py."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from arrears_emulators.checkout.app import CheckoutConfig, create_app
from arrears_emulators.common import EmulatorServer
from arrears_portal.__main__ import definition
from arrears_shared.audit.chain import verify as verify_chain
from arrears_shared.service import ServiceHost
from portal_support import hosted, portal_settings
from sqlalchemy import text

from .test_portal import KEY, account, csrf_of, known, publish, sign_in, token

SECRET = "sk_test_portal_pay"


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with EmulatorServer(create_app(CheckoutConfig(secret_key=SECRET))) as s:
        yield s.url


@pytest.fixture(autouse=True)
def clean_gateway(gateway: str) -> None:
    httpx.post(f"{gateway}/_emulator/reset").raise_for_status()


@pytest.fixture(scope="module")
async def portal(
    broker: Any, fresh_database_url: Callable[..., str], gateway: str
) -> AsyncIterator[tuple[ServiceHost, Any]]:
    settings = portal_settings(
        broker,
        fresh_database_url("portal"),
        KEY,
        link_public_url="https://pay.acme.test/p/",
        portal_brand_name="Acme Water",
        portal_checkout_base_url=gateway,
        portal_checkout_secret_key=SECRET,
        portal_pay_min_minor=500,
    )
    async with hosted(definition(settings)) as (host, client, _):
        yield host, client


async def visit(portal: Any, broker: Any, balance: int = 12_345) -> tuple[str, str]:
    host, client = portal
    acc = f"PAY-{uuid.uuid4().hex[:8]}"
    await publish(broker.bootstrap_servers, account(acc, balance=balance))
    await known(host, acc)
    client.cookies.clear()
    return acc, await sign_in(client, token(acc))


def nonce_of(html: str) -> str:
    m = re.search(r'name="nonce" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


async def gw(method: str, url: str, **kw: Any) -> httpx.Response:
    """A call to the emulator (its API, hosted page or control API) from the test's event loop."""
    async with httpx.AsyncClient() as c:
        return await c.request(method, url, **kw)


async def sessions_at(gateway: str) -> list[dict[str, Any]]:
    return (await gw("GET", f"{gateway}/_emulator/sessions")).json()  # type: ignore[no-any-return]


async def audit_of(host: ServiceHost, acc: str) -> list[Any]:
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        return list(
            (
                await c.execute(
                    text("SELECT action, after FROM portal.audit_log WHERE entity_id = :a ORDER BY seq"),
                    {"a": acc},
                )
            ).all()
        )


async def test_pay_in_full_goes_to_the_hosted_checkout(portal: Any, broker: Any, gateway: str) -> None:
    host, client = portal
    acc, page = await visit(portal, broker)
    assert "Pay in full: $123.45" in page or "Pay in full: 123.45" in page, page
    assert 'action="/portal/account/pay"' in page
    csp = (await client.get("/portal/account")).headers["content-security-policy"]
    assert f"form-action 'self' {gateway}" in csp
    r = await client.post(
        "/portal/account/pay", data={"csrf": csrf_of(page), "nonce": nonce_of(page), "full": "1"}
    )
    assert r.status_code == 303, r.text
    [made] = await sessions_at(gateway)
    assert r.headers["location"] == made["url"] and made["url"].startswith(f"{gateway}/c/pay/cs_test_")
    assert made["amount_total"] == 12_345 and made["currency"] == "usd"
    assert made["client_reference_id"] == acc and made["metadata"]["account_id"] == acc
    assert made["success_url"] == "https://pay.acme.test/portal/paid?session_id={CHECKOUT_SESSION_ID}"
    assert made["cancel_url"] == "https://pay.acme.test/portal/account?done=pay_cancelled"
    # the PaymentIntent carries the account too, so either webhook event finds it
    detail = (await gw("GET", f"{gateway}/v1/checkout/sessions/{made['id']}", auth=(SECRET, ""))).json()
    assert detail["id"] == made["id"]
    audit = await audit_of(host, acc)
    assert [a.action for a in audit] == ["portal.pay"]
    assert audit[0].after["checkout_session_id"] == made["id"] and audit[0].after["amount_minor"] == 12_345
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        assert (await verify_chain(c, "portal")).ok


async def test_double_click_is_one_session_and_one_audit_entry(
    portal: Any, broker: Any, gateway: str
) -> None:
    host, client = portal
    acc, page = await visit(portal, broker)
    form = {"csrf": csrf_of(page), "nonce": nonce_of(page), "amount": "50.00"}
    first = await client.post("/portal/account/pay", data=form)
    second = await client.post("/portal/account/pay", data=form)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert len(await sessions_at(gateway)) == 1 and (await sessions_at(gateway))[0]["amount_total"] == 5_000
    assert [a.action for a in await audit_of(host, acc)] == ["portal.pay"]
    # a fresh page (new nonce) for another amount is a new session
    page2 = (await client.get("/portal/account")).text
    third = await client.post(
        "/portal/account/pay", data={"csrf": csrf_of(page2), "nonce": nonce_of(page2), "amount": "60"}
    )
    assert third.status_code == 303 and third.headers["location"] != first.headers["location"]
    assert sorted(s["amount_total"] for s in (await sessions_at(gateway))) == [5_000, 6_000]


@pytest.mark.parametrize(
    ("amount", "says"),
    [
        ("0", "Please enter an amount"),
        ("-5", "Please enter an amount"),
        ("abc", "Please enter an amount"),
        ("1.234", "Please enter an amount"),
        ("123.46", "more than you owe"),
        ("4.99", "smallest payment"),
    ],
)
async def test_part_amounts_are_checked(
    portal: Any, broker: Any, gateway: str, amount: str, says: str
) -> None:
    host, client = portal
    acc, page = await visit(portal, broker)
    r = await client.post(
        "/portal/account/pay", data={"csrf": csrf_of(page), "nonce": nonce_of(page), "amount": amount}
    )
    assert r.status_code == 422 and says in r.text, r.text
    assert (await sessions_at(gateway)) == [] and await audit_of(host, acc) == []


async def test_a_balance_below_the_minimum_can_be_paid_in_full(
    portal: Any, broker: Any, gateway: str
) -> None:
    _, client = portal
    _, page = await visit(portal, broker, balance=300)
    r = await client.post(
        "/portal/account/pay", data={"csrf": csrf_of(page), "nonce": nonce_of(page), "amount": "3.00"}
    )
    assert r.status_code == 303 and (await sessions_at(gateway))[0]["amount_total"] == 300


async def test_csrf_and_a_visit_are_required(portal: Any, broker: Any, gateway: str) -> None:
    _, client = portal
    _, page = await visit(portal, broker)
    bad = await client.post("/portal/account/pay", data={"csrf": "x" * 20, "nonce": "n", "full": "1"})
    assert bad.status_code == 403
    client.cookies.clear()
    gone = await client.post("/portal/account/pay", data={"csrf": csrf_of(page), "nonce": "n", "full": "1"})
    assert gone.status_code == 401
    assert (await sessions_at(gateway)) == []


async def test_gateway_errors_retry_then_answer_politely(portal: Any, broker: Any, gateway: str) -> None:
    host, client = portal
    acc, page = await visit(portal, broker)
    (await gw("POST", f"{gateway}/_emulator/faults", json={"error_5xx": {"next": 1}})).raise_for_status()
    ok = await client.post(
        "/portal/account/pay", data={"csrf": csrf_of(page), "nonce": nonce_of(page), "full": "1"}
    )
    assert ok.status_code == 303 and len(await sessions_at(gateway)) == 1  # retried once, same key
    (await gw("POST", f"{gateway}/_emulator/faults", json={"error_5xx": {"next": 10}})).raise_for_status()
    down = await client.post(
        "/portal/account/pay", data={"csrf": csrf_of(page), "nonce": "another", "amount": "10"}
    )
    assert down.status_code == 503 and "not available right now" in down.text
    assert len(await sessions_at(gateway)) == 1 and [a.action for a in await audit_of(host, acc)] == [
        "portal.pay"
    ]


async def test_success_page_after_paying_and_only_for_own_sessions(
    portal: Any, broker: Any, gateway: str
) -> None:
    _, client = portal
    _, page = await visit(portal, broker)
    r = await client.post(
        "/portal/account/pay", data={"csrf": csrf_of(page), "nonce": nonce_of(page), "amount": "20"}
    )
    hosted = r.headers["location"]
    paid = await gw("POST", hosted, data={"card_number": "4242424242424242"})
    assert paid.status_code == 303
    back = urlsplit(paid.headers["location"])
    assert back.netloc == "pay.acme.test" and back.path == "/portal/paid"
    session_id = parse_qs(back.query)["session_id"][0]
    thanks = await client.get(f"/portal/paid?session_id={session_id}")
    assert thanks.status_code == 200 and "We received your payment of $20.00" in thanks.text, thanks.text
    # another visitor (another account) cannot read it
    _, _ = await visit(portal, broker)
    other = await client.get(f"/portal/paid?session_id={session_id}")
    assert other.status_code == 404 and "20.00" not in other.text
    cancelled = await client.get("/portal/account?done=pay_cancelled")
    assert "nothing was charged" in cancelled.text
