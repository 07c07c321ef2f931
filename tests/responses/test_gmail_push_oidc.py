"""Gmail push authenticated by the OIDC token Pub/Sub signs: the real responses service (broker, Postgres)
verifies tokens against the certificates the Gmail emulator serves (Google's v1 PEM format) with google-auth.
A valid token wakes the poller; every forged, stale, misdirected or missing one is refused and changes
nothing (the poll interval is an hour, so only an accepted push can make a reply appear)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from arrears_emulators.common import EmulatorServer
from arrears_emulators.gmail.app import GmailConfig
from arrears_emulators.gmail.app import create_app as create_gmail
from arrears_emulators.gmail.push_token import PushSigner
from arrears_responses.__main__ import definition
from arrears_responses.gmail.push_auth import PushRejected, bearer_token
from arrears_responses.settings import ResponsesSettings
from arrears_shared.service import ServiceHost
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

MAILBOX = "collections@arrears.test"
AUDIENCE = "https://responses.arrears.test/webhooks/gmail/push"
ACCOUNT = "gmail-push@arrears-emulator.iam.gserviceaccount.com"


@pytest.fixture(scope="module")
def gmail() -> Iterator[EmulatorServer]:
    with EmulatorServer(create_gmail(GmailConfig(user_email=MAILBOX, push_service_account=ACCOUNT))) as srv:
        yield srv


def signer(gmail: EmulatorServer) -> PushSigner:
    signer: PushSigner = gmail.app.state.gmail.push_signer
    return signer


@pytest.fixture(scope="module")
async def service(
    broker: Any, fresh_database_url: Callable[..., str], gmail: EmulatorServer
) -> AsyncIterator[tuple[ServiceHost, httpx.AsyncClient]]:
    s = ResponsesSettings(
        gmail_api_endpoint=gmail.url,
        gmail_token="t",
        gmail_sender=MAILBOX,
        responses_gmail_enabled=True,
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=fresh_database_url("responses_push_oidc"),
        responses_gmail_poll_s=3600.0,  # only a push can make it poll again within the test
        responses_gmail_push_audience=AUDIENCE,
        responses_gmail_push_service_account=ACCOUNT,
        responses_gmail_push_certs_url=f"{gmail.url}/oauth2/v1/certs",
        runner_poll_timeout_ms=100,
    )
    host = ServiceHost(definition(s))
    app = host.build_app()
    await host.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as client:
        yield host, client
    await host.stop()


def push_body() -> dict[str, Any]:
    data = base64.urlsafe_b64encode(json.dumps({"emailAddress": MAILBOX, "historyId": 1}).encode()).decode()
    return {"message": {"data": data, "messageId": "1"}, "subscription": "projects/p/subscriptions/s"}


async def email_replies(host: ServiceHost) -> int:
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        return int(
            (await c.execute(text("SELECT count(*) FROM responses.replies WHERE channel='email'"))).scalar()
            or 0
        )


async def cursor(host: ServiceHost) -> int | None:
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        return (await c.execute(text("SELECT history_id FROM responses.gmail_cursor"))).scalar()


def inject(gmail_url: str) -> None:
    with httpx.Client(timeout=10) as c:
        r = c.post(
            f"{gmail_url}/_emulator/inbound",
            json={"from": "stranger@example.com", "subject": "hi", "body": "call me", "to": MAILBOX},
        )
        r.raise_for_status()


def forged_tokens(gmail: EmulatorServer) -> dict[str, tuple[dict[bytes, bytes], int]]:
    good = signer(gmail)
    other = PushSigner(service_account=ACCOUNT, kid=good.kid)  # same key id, another key: bad signature
    now = int(time.time())

    def auth(token: str) -> dict[bytes, bytes]:
        return {b"authorization": f"Bearer {token}".encode()}

    return {
        "missing": ({}, 401),
        "not bearer": ({b"authorization": b"Basic dXNlcjpwYXNz"}, 401),
        "garbage": (auth("not.a.jwt"), 401),
        "non-ascii": ({b"authorization": "Bearer \u00e9.\u00e9.\u00e9".encode("latin-1")}, 401),
        "wrong audience": (auth(good.token("https://elsewhere.example/push")), 401),
        "wrong issuer": (auth(good.token(AUDIENCE, iss="https://evil.example")), 401),
        "expired": (auth(good.token(AUDIENCE, iat=now - 7200, exp=now - 3600)), 401),
        "bad signature": (auth(other.token(AUDIENCE)), 401),
        "wrong email": (auth(good.token(AUDIENCE, email="someone@evil.iam.gserviceaccount.com")), 403),
        "email not verified": (auth(good.token(AUDIENCE, email_verified=False)), 403),
    }


async def test_only_a_valid_pubsub_token_wakes_the_poller(
    service: tuple[ServiceHost, httpx.AsyncClient], gmail: EmulatorServer
) -> None:
    host, client = service
    deadline = time.monotonic() + 20
    while await cursor(host) is None:  # the loop's first poll initialises the cursor
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    inject(gmail.url)

    for name, (headers, status) in forged_tokens(gmail).items():
        r = await client.post("/webhooks/gmail/push", json=push_body(), headers=headers)
        assert r.status_code == status, (name, r.status_code, r.text)
    # the old query-string token is gone: it authenticates nothing
    r = await client.post("/webhooks/gmail/push?token=anything", json=push_body())
    assert r.status_code == 401
    await asyncio.sleep(1.0)
    assert await email_replies(host) == 0, "a refused push made the service poll"

    valid = {"Authorization": f"Bearer {signer(gmail).token(AUDIENCE)}"}
    assert (
        await client.post("/webhooks/gmail/push", json={"message": {"data": "%%%"}}, headers=valid)
    ).status_code == 400
    r = await client.post("/webhooks/gmail/push", json=push_body(), headers=valid)
    assert r.status_code == 204, r.text
    deadline = time.monotonic() + 20
    while await email_replies(host) == 0:
        assert time.monotonic() < deadline, "the push did not make the service poll"
        await asyncio.sleep(0.1)


async def test_unconfigured_push_is_refused(broker: Any, fresh_database_url: Callable[..., str]) -> None:
    s = ResponsesSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=fresh_database_url("responses_push_off"),
        runner_poll_timeout_ms=100,
    )
    host = ServiceHost(definition(s))
    app = host.build_app()
    await host.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as client:
            token = PushSigner(service_account=ACCOUNT).token(AUDIENCE)
            r = await client.post(
                "/webhooks/gmail/push", json=push_body(), headers={"Authorization": f"Bearer {token}"}
            )
            assert r.status_code == 401
    finally:
        await host.stop()


@given(st.one_of(st.none(), st.text(max_size=300), st.text(alphabet=st.characters(max_codepoint=255))))
def test_bearer_parsing_is_total(value: str | None) -> None:
    try:
        token = bearer_token(value)
    except PushRejected as e:
        assert e.status == 401
    else:
        assert token.isascii() and token.count(".") == 2
