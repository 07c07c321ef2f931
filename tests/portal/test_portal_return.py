"""Coming back from the payment gateway's hosted page on another site (real broker, Postgres and the checkout
emulator): the visit's cookie is `SameSite=Lax`, so the gateway's top-level GET redirect to `/portal/paid`
carries it and the page shows the account's payment; and because Lax is only safe when nothing changes on a
GET, every state-changing route is a POST that needs the visit's CSRF token, and a request from another
origin changes nothing — without the cookie (what a browser sends cross-site under Lax), or with it but
marked cross-site (`Sec-Fetch-Site`, `Origin`) or without the token."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from arrears_emulators.checkout.app import CheckoutConfig, create_app
from arrears_emulators.common import EmulatorServer
from arrears_portal.__main__ import definition
from arrears_shared.service import ServiceHost
from fastapi.routing import APIRoute
from portal_support import hosted, portal_settings
from sqlalchemy import text

from .test_portal import KEY, account, csrf_of, known, publish, sign_in, token

SECRET = "sk_test_portal_return"
EVIL = {"origin": "https://evil.example", "sec-fetch-site": "cross-site"}


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with EmulatorServer(create_app(CheckoutConfig(secret_key=SECRET))) as s:
        yield s.url


@pytest.fixture(scope="module")
async def portal(
    broker: Any, fresh_database_url: Callable[..., str], gateway: str
) -> AsyncIterator[tuple[ServiceHost, Any, Any]]:
    settings = portal_settings(
        broker,
        fresh_database_url("portal"),
        KEY,
        link_public_url="https://pay.acme.test/p/",
        portal_checkout_base_url=gateway,
        portal_checkout_secret_key=SECRET,
    )
    async with hosted(definition(settings)) as (host, client, app):
        yield host, client, app


async def visit(portal: Any, broker: Any) -> tuple[str, str]:
    host, client, _ = portal
    acc = f"RET-{uuid.uuid4().hex[:8]}"
    await publish(broker.bootstrap_servers, account(acc))
    await known(host, acc)
    client.cookies.clear()
    return acc, await sign_in(client, token(acc))


async def changes(host: ServiceHost, acc: str) -> tuple[int, int, int]:
    """(actions, audit entries, outbox events) about the account: what a state change leaves behind."""
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        out = []
        for sql in (
            "SELECT count(*) FROM portal.actions WHERE account_id = :a",
            "SELECT count(*) FROM portal.audit_log WHERE entity_id = :a",
            "SELECT count(*) FROM portal.outbox WHERE key = convert_to(:a, 'UTF8') AND topic = 'overrides'",
        ):
            out.append((await c.execute(text(sql), {"a": acc})).scalar_one())
    return out[0], out[1], out[2]


def api_routes(routes: Any) -> Iterator[APIRoute]:
    for r in routes:
        if isinstance(r, APIRoute):
            yield r
        elif hasattr(r, "original_router"):  # an included router (FastAPI keeps it as one route)
            yield from api_routes(r.original_router.routes)


def state_changing(app: Any) -> list[str]:
    """Every portal route that is not a GET (the debtor's visit lives under /portal)."""
    found = []
    for r in api_routes(app.routes):
        if r.path.startswith("/portal"):
            assert r.methods <= {"GET", "POST"}, r
            if "POST" in r.methods:
                found.append(r.path)
    return sorted(found)


async def test_the_cookie_is_lax_and_httponly(portal: Any, broker: Any) -> None:
    host, client, _ = portal
    acc = f"RET-{uuid.uuid4().hex[:8]}"
    await publish(broker.bootstrap_servers, account(acc))
    await known(host, acc)
    r = await client.post(f"/p/{token(acc)}", data={"digits": "4321", "lang": "en"})
    cookie = r.headers["set-cookie"].lower()
    assert "samesite=lax" in cookie and "httponly" in cookie and "path=/" in cookie


def form_for(path: str, csrf: str) -> dict[str, Any]:
    """A valid body for each state-changing route (so only the origin, cookie or token can refuse it)."""
    on = (date.today() + timedelta(days=3)).isoformat()
    return {
        "csrf": csrf,
        "date": on,
        "note": "not mine",
        "channel": "sms",
        "amount": "20",
        "nonce": "n-1",
        "count": "2",
        "every": "month",
        "first": on,
        "offer_id": "none",
        "not_before": "10:00",
    }


async def test_a_request_from_another_origin_changes_nothing(portal: Any, broker: Any) -> None:
    host, client, app = portal
    routes = state_changing(app)
    assert {"/portal/account/promise", "/portal/account/preferences", "/portal/account/pay"} <= set(routes)
    acc, page = await visit(portal, broker)
    csrf = csrf_of(page)
    cookie = dict(client.cookies)
    for path in routes:
        body = form_for(path, csrf)
        # what a browser sends cross-site under SameSite=Lax: no cookie (even with the token, which it
        # cannot know) -> the visit is not there
        async with httpx.AsyncClient(transport=client._transport, base_url="http://portal") as stranger:
            r = await stranger.post(path, data=body, headers=EVIL)
            assert r.status_code in (401, 403), (path, r.status_code)
        # an old browser that still sends the cookie cross-site: refused by Sec-Fetch-Site / Origin
        for headers in (EVIL, {"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"}):
            r = await client.post(path, data=body, headers=headers, cookies=cookie)
            assert r.status_code == 403, (path, headers, r.status_code)
        # the right cookie without the token (a forged form)
        r = await client.post(path, data={**body, "csrf": ""}, cookies=cookie)
        assert r.status_code in (401, 403), (path, r.status_code)
    assert await changes(host, acc) == (0, 0, 0)
    # the visit is still open (a forged sign-out did not end it) and the page works from our own origin
    page = await client.get("/portal/account", cookies=cookie)
    assert page.status_code == 200
    r = await client.post(
        "/portal/account/dispute",
        data={"csrf": csrf, "note": "not mine"},
        headers={"origin": "https://pay.acme.test", "sec-fetch-site": "same-origin"},
        cookies=cookie,
    )
    assert r.status_code == 303 and (await changes(host, acc))[0] == 1


async def test_the_gateways_redirect_back_shows_the_accounts_payment(
    portal: Any, broker: Any, gateway: str
) -> None:
    """Real Stripe sends the debtor back from checkout.stripe.com by a top-level GET: under Lax the browser
    sends the visit's cookie with it (`Sec-Fetch-Site: cross-site`), and the page speaks of this account's
    payment. Without the cookie (the visit ended while paying) it thanks without disclosing anything."""
    _, client, _ = portal
    _, page = await visit(portal, broker)
    cookie = dict(client.cookies)
    r = await client.post(
        "/portal/account/pay", data={"csrf": csrf_of(page), "nonce": "n-1", "amount": "20"}, cookies=cookie
    )
    assert r.status_code == 303, r.text
    async with httpx.AsyncClient() as c:
        paid = await c.post(r.headers["location"], data={"card_number": "4242424242424242"})
    back = urlsplit(paid.headers["location"])
    assert back.path == "/portal/paid"
    session_id = parse_qs(back.query)["session_id"][0]
    came_back = await client.get(
        f"/portal/paid?session_id={session_id}",
        headers={"sec-fetch-site": "cross-site", "referer": gateway},
        cookies=cookie,
    )
    assert came_back.status_code == 200 and "We received your payment of $20.00" in came_back.text
    client.cookies.clear()
    async with httpx.AsyncClient(transport=client._transport, base_url="http://portal") as stranger:
        anonymous = await stranger.get(f"/portal/paid?session_id={session_id}")
    assert anonymous.status_code == 200 and "20.00" not in anonymous.text and "Maria" not in anonymous.text
