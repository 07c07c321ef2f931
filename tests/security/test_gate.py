"""The gate and the route declarations, through a real app (create_app) on the real `iam` schema: what an
anonymous, a wrong, an expired and a rightful caller each get, sessions with CSRF, throttling, and that a
route without a declaration cannot be served."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from arrears_emulators.oidc.app import IssuerState, SigningKey, sign
from arrears_shared.auth import Principal, UndeclaredRouteError, public, requires, sessions
from arrears_shared.auth import metrics as auth_metrics
from arrears_shared.auth.gate import Authenticator
from arrears_shared.http import Health, create_app
from arrears_shared.settings import AuthSettings
from auth_support import bearer, issue_key_async
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

ROLES = ("viewer", "collector", "supervisor", "admin", "service")


def demo_router() -> APIRouter:
    r = APIRouter()

    @r.get("/accounts/{account_id}")
    async def account(account_id: str, who: Principal = Depends(requires("accounts.read"))) -> dict[str, str]:
        return {"account_id": account_id, "by": who.name}

    @r.post("/approvals/{account_id}/approve")
    async def approve(
        account_id: str, who: Principal = Depends(requires("approvals.decide"))
    ) -> dict[str, str]:
        return {"approved": account_id, "by": who.name}

    @r.post("/webhooks/demo", dependencies=[Depends(public("demo webhook, verifies its own signature"))])
    async def webhook() -> dict[str, bool]:
        return {"ok": True}

    @r.get("/login", dependencies=[Depends(public("sign-in form"))])
    async def login() -> dict[str, bool]:
        return {"form": True}

    return r


def make_app(authn: Authenticator, login_path: str | None = None) -> FastAPI:
    return create_app(
        "demo", Health(), [demo_router()], authenticator=authn, max_body_bytes=10_000, login_path=login_path
    )


@pytest.fixture
async def setup(
    iam_engine: AsyncEngine, issuer: tuple[str, IssuerState]
) -> AsyncIterator[tuple[httpx.AsyncClient, Authenticator, dict[str, str]]]:
    url, _ = issuer
    settings = AuthSettings(
        auth_oidc_issuer=url, auth_failure_slowdown_after=1000, auth_failure_block_after=1000
    )
    authn = Authenticator(settings)
    authn.bind(iam_engine)
    async with iam_engine.begin() as conn:
        role_keys = {role: await issue_key_async(conn, role) for role in ROLES}
    app = make_app(authn, login_path="/login")
    transport = httpx.ASGITransport(app=app, client=("10.9.8.7", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        yield client, authn, role_keys


async def test_no_credential_is_401_everywhere_but_the_public_routes(setup) -> None:
    client, _, _ = setup
    for method, path in [
        ("GET", "/accounts/a1"),
        ("POST", "/approvals/a1/approve"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/no/such/route"),
        ("DELETE", "/healthz"),
    ]:
        r = await client.request(method, path)
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.json() == {"detail": "authentication required"}
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.headers["x-request-id"]
    for method, path in [
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("POST", "/webhooks/demo"),
        ("GET", "/login"),
    ]:
        assert (await client.request(method, path)).status_code == 200, path


async def test_each_role_gets_what_its_permissions_allow(setup) -> None:
    client, _, role_keys = setup
    for role, key in role_keys.items():
        r = await client.get("/accounts/a1", headers=bearer(key))
        if role in ("collector", "supervisor", "admin"):
            assert r.status_code == 200 and r.json()["by"].startswith(f"test-{role}")
        else:
            assert r.status_code == 403
            assert "accounts.read" in r.json()["detail"] and key not in r.text
        r = await client.post("/approvals/a1/approve", headers={"X-API-Key": key})
        assert r.status_code == (200 if role in ("supervisor", "admin") else 403), role
    # authenticated callers see a real 404 for unknown routes, and the OpenAPI document
    assert (await client.get("/nope", headers=bearer(role_keys["viewer"]))).status_code == 404
    doc = (await client.get("/openapi.json", headers=bearer(role_keys["viewer"]))).json()
    op = doc["paths"]["/approvals/{account_id}/approve"]["post"]
    assert op["x-arrears-permission"] == "approvals.decide" and op["x-arrears-roles"] == [
        "supervisor",
        "admin",
    ]
    assert doc["paths"]["/webhooks/demo"]["post"]["security"] == []


async def test_bad_credentials_all_look_the_same(setup, iam_engine: AsyncEngine) -> None:
    client, _, role_keys = setup
    async with iam_engine.begin() as conn:
        revoked = await issue_key_async(conn, "admin")
        from arrears_shared.auth import keys

        assert await keys.revoke(conn, keys.parse(revoked) or "")
    bodies = set()
    for headers in (
        bearer("ark_000000000000_" + "x" * 43),
        bearer(revoked),
        bearer("garbage"),
        bearer("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"),
        {"Authorization": "Basic " + "YWRtaW46YWRtaW4="},
        {"X-API-Key": role_keys["admin"] + "tampered"},
    ):
        r = await client.get("/accounts/a1", headers=headers)
        assert r.status_code == 401, headers
        bodies.add(r.text)
    assert bodies == {'{"detail": "invalid or expired credentials"}'}


async def test_oidc_tokens_expired_or_for_another_audience_are_401(
    setup, issuer: tuple[str, IssuerState], signing_key: SigningKey
) -> None:
    client, _, _ = setup
    url, _ = issuer
    base = {"iss": url, "aud": "arrears", "sub": "p-7", "email": "sup@example.com", "roles": ["supervisor"]}
    ok = await client.post("/approvals/a9/approve", headers=bearer(sign(signing_key, base)))
    assert ok.status_code == 200 and ok.json()["by"] == "sup@example.com"
    expired = sign(signing_key, base | {"iat": 1_000_000, "exp": 1_000_300})
    assert (await client.get("/accounts/a1", headers=bearer(expired))).status_code == 401
    other = sign(signing_key, base | {"aud": "another-app"})
    assert (await client.get("/accounts/a1", headers=bearer(other))).status_code == 401
    viewer = sign(signing_key, base | {"roles": ["viewer"]})
    assert (await client.get("/accounts/a1", headers=bearer(viewer))).status_code == 403


async def test_sessions_need_the_csrf_token_for_changes_and_die_when_closed(
    setup, iam_engine: AsyncEngine
) -> None:
    client, _, _ = setup
    who = Principal(name="lead@example.com", roles=frozenset({"supervisor"}), kind="token", subject="s-1")
    async with iam_engine.begin() as conn:
        token, csrf = await sessions.open_session(conn, who, timedelta(hours=1))
    cookie = {"cookie": f"{sessions.COOKIE}={token}"}
    assert (await client.get("/accounts/a1", headers=cookie)).json()["by"] == "lead@example.com"
    refused = await client.post("/approvals/a1/approve", headers=cookie)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    wrong = await client.post("/approvals/a1/approve", headers=cookie | {"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403
    assert (
        await client.post("/approvals/a1/approve", headers=cookie | {"X-CSRF-Token": csrf})
    ).status_code == 200
    assert (await client.post(f"/approvals/a1/approve?csrf_token={csrf}", headers=cookie)).status_code == 200
    async with iam_engine.begin() as conn:
        await sessions.close_session(conn, token)
    assert (await client.get("/accounts/a1", headers=cookie)).status_code == 401


async def test_a_browser_without_a_session_is_sent_to_sign_in(setup) -> None:
    client, _, _ = setup
    r = await client.get("/accounts/a1", headers={"accept": "text/html,application/xhtml+xml"})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert (await client.get("/accounts/a1", headers={"accept": "application/json"})).status_code == 401


async def test_repeated_failures_are_slowed_then_refused_and_counted(iam_engine: AsyncEngine) -> None:
    authn = Authenticator(AuthSettings(auth_failure_slowdown_after=2, auth_failure_block_after=4))
    authn.bind(iam_engine)
    async with iam_engine.begin() as conn:
        good = await issue_key_async(conn, "viewer")
    app = make_app(authn)
    before = auth_metrics.FAILURES.labels("api_key")._value.get()
    throttled = auth_metrics.THROTTLED._value.get()
    guesser = httpx.ASGITransport(app=app, client=("203.0.113.5", 1))
    other = httpx.ASGITransport(app=app, client=("198.51.100.1", 1))
    async with httpx.AsyncClient(transport=guesser, base_url="http://d") as c:
        statuses = [
            (
                await c.get("/metrics/../accounts/a", headers=bearer("ark_000000000000_" + "y" * 43))
            ).status_code
            for _ in range(4)
        ]
        blocked = await c.get("/accounts/a1", headers=bearer(good))  # even a good key, from that address
    assert statuses == [401, 401, 401, 401]
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    assert auth_metrics.FAILURES.labels("api_key")._value.get() == before + 4
    assert auth_metrics.THROTTLED._value.get() == throttled + 1
    async with httpx.AsyncClient(transport=other, base_url="http://d") as c:
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/accounts/a1", headers=bearer(good))).status_code == 403  # viewer, not blocked


async def test_nothing_is_read_before_authentication_and_bodies_are_capped(setup) -> None:
    client, _, role_keys = setup
    big = b"x" * 50_000
    anonymous = await client.post("/approvals/a1/approve", content=big)
    assert anonymous.status_code == 401
    signed_in = await client.post("/approvals/a1/approve", content=big, headers=bearer(role_keys["admin"]))
    assert signed_in.status_code == 413


async def test_credentials_never_reach_the_logs(setup, caplog: pytest.LogCaptureFixture) -> None:
    client, _, role_keys = setup
    caplog.set_level(logging.DEBUG)
    await client.get("/accounts/a1", headers=bearer(role_keys["admin"]))
    await client.get("/accounts/a1", headers=bearer(role_keys["admin"] + "z"))
    await client.get("/accounts/a1", headers=bearer("eyJhbGciOiJSUzI1NiIsImtpZCI6Ingi.eyJzdWIiOiJ4In0.c2ln"))
    text = caplog.text
    assert role_keys["admin"] not in text and "eyJzdWIiOiJ4In0" not in text


def test_a_route_without_a_declaration_stops_the_app(iam_engine: AsyncEngine) -> None:
    authn = Authenticator(AuthSettings())
    r = APIRouter()

    @r.get("/forgotten")
    async def forgotten() -> dict[str, str]:
        return {}

    with pytest.raises(UndeclaredRouteError, match="GET /forgotten: declares no access"):
        create_app("demo", Health(), [r], authenticator=authn)
    twice = APIRouter(dependencies=[Depends(requires("reports.read"))])

    @twice.get("/both", dependencies=[Depends(public("oops"))])
    async def both() -> dict[str, str]:
        return {}

    with pytest.raises(UndeclaredRouteError, match="declares 2 accesses"):
        create_app("demo", Health(), [twice], authenticator=authn)
    with pytest.raises(KeyError, match="unknown permission"):
        requires("acounts.read")


async def test_metrics_are_not_served_through_a_proxy(setup) -> None:
    client, _, _ = setup
    assert (await client.get("/metrics")).status_code == 200
    for header in ({"X-Forwarded-For": "198.51.100.7"}, {"Forwarded": "for=198.51.100.7"}):
        assert (await client.get("/metrics", headers=header)).status_code == 404
