"""The Twilio Messages emulator through the production client (`TwilioClient`): sends, errors as Twilio
answers them (auth 20003, invalid To 21211, rate limit 429/20429, 5xx, dropped responses), listing for
reconciliation, and status callbacks signed with X-Twilio-Signature."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from arrears_dispatcher_sms.twilio_client import TwilioClient, valid_signature
from arrears_emulators.common import EmulatorServer
from arrears_emulators.twilio.app import DEFAULT_SID, DEFAULT_TOKEN, TwilioConfig, create_app
from arrears_shared.providers.errors import (
    ProviderAuthError,
    ProviderInDoubt,
    ProviderPermanentError,
    ProviderRateLimited,
    ProviderTransientError,
)
from fastapi import FastAPI, Request, Response

FROM = "+15550100001"
TO = "+15550100002"


@pytest.fixture
def emulator() -> Iterator[Any]:
    with EmulatorServer(
        create_app(TwilioConfig(from_numbers={FROM}, undelivered_numbers={"+15550100009"}))
    ) as s:
        yield s


@pytest.fixture
async def client(emulator: Any) -> AsyncIterator[TwilioClient]:
    c = TwilioClient(account_sid=DEFAULT_SID, auth_token=DEFAULT_TOKEN, base_url=emulator.url, timeout_s=2.0)
    yield c
    await c.aclose()


def faults(url: str, body: dict[str, Any]) -> None:
    httpx.post(f"{url}/_emulator/faults", json=body, timeout=5).raise_for_status()


def limits(url: str, body: dict[str, Any]) -> None:
    httpx.put(f"{url}/_emulator/limits", json=body, timeout=5).raise_for_status()


def ledger(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/_emulator/ledger", timeout=5).json()


def fetch(url: str, sid: str) -> dict[str, Any]:
    path = f"{url}/2010-04-01/Accounts/{DEFAULT_SID}/Messages/{sid}.json"
    return httpx.get(path, auth=(DEFAULT_SID, DEFAULT_TOKEN), timeout=5).json()


async def test_send_and_list(client: TwilioClient, emulator: Any) -> None:
    m = await client.send_message(to=TO, from_=FROM, body="Your balance is due. Reply STOP to opt out")
    assert m.sid.startswith("SM") and m.status == "queued" and m.to == TO and m.from_ == FROM
    raw = fetch(emulator.url, m.sid)
    assert raw["direction"] == "outbound-api" and raw["num_segments"] == "1"
    for i in range(4):
        await client.send_message(to=TO, from_=FROM, body=f"other {i}")
    found = await client.list_messages(to=TO, from_=FROM, page_size=2)  # three pages, newest first
    assert [x.body for x in found] == ["other 3", "other 2", "other 1", "other 0", m.body]
    later = await client.list_messages(
        to=TO, from_=FROM, created_after=datetime.now(UTC) + timedelta(hours=1)
    )
    assert later == []
    assert ledger(emulator.url)["by_recipient"] == {TO: 5}


async def test_errors_are_classified(client: TwilioClient, emulator: Any) -> None:
    bad = TwilioClient(account_sid=DEFAULT_SID, auth_token="wrong", base_url=emulator.url)
    with pytest.raises(ProviderAuthError) as auth:
        await bad.send_message(to=TO, from_=FROM, body="x")
    await bad.aclose()
    assert auth.value.status == 401 and "20003" in str(auth.value)
    with pytest.raises(ProviderPermanentError) as invalid:
        await client.send_message(to="0800-not-e164", from_=FROM, body="x")
    assert "21211" in str(invalid.value)
    with pytest.raises(ProviderPermanentError, match="21606"):
        await client.send_message(to=TO, from_="+15559999999", body="x")
    limits(emulator.url, {"rate": 1.0, "burst": 1})
    await client.send_message(to=TO, from_=FROM, body="one")
    with pytest.raises(ProviderRateLimited) as limited:
        await client.send_message(to=TO, from_=FROM, body="two")
    assert limited.value.retry_after_s > 0 and "20429" in str(limited.value)
    limits(emulator.url, {"enabled": False})
    faults(emulator.url, {"error_5xx": {"next": 1, "status": 503}})
    with pytest.raises(ProviderTransientError):
        await client.send_message(to=TO, from_=FROM, body="three")
    faults(emulator.url, {"accept_then_drop": {"next": 1}})
    with pytest.raises(ProviderInDoubt):
        await client.send_message(to=TO, from_=FROM, body="four")
    entries = ledger(emulator.url)["entries"]
    assert [e["content"] for e in entries] == ["one", "four"]  # refused sends are not in the ledger
    assert entries[1]["dropped"] is True
    assert [m.body for m in await client.list_messages(to=TO, from_=FROM)] == ["four", "one"]


async def test_status_callbacks_are_signed(client: TwilioClient) -> None:
    received: list[tuple[str, dict[str, str], str | None]] = []
    app = FastAPI()

    @app.post("/twilio/status")
    async def status(request: Request) -> Response:
        params = dict(parse_qsl((await request.body()).decode()))
        received.append((str(request.url), params, request.headers.get("x-twilio-signature")))
        return Response(status_code=204)

    with EmulatorServer(app) as hook:
        url = f"{hook.url}/twilio/status"
        m = await client.send_message(to="+15550100009", from_=FROM, body="hello", status_callback=url)
        for _ in range(100):
            if len(received) >= 2:
                break
            await asyncio.sleep(0.05)
    assert [p["MessageStatus"] for _, p, _ in received] == ["sent", "undelivered"]
    for got_url, params, sig in received:
        assert params["MessageSid"] == m.sid and params["AccountSid"] == DEFAULT_SID
        assert valid_signature(DEFAULT_TOKEN, got_url, params, sig)
        assert not valid_signature("another-token", got_url, params, sig)
    assert received[1][1]["ErrorCode"] == "30003"
