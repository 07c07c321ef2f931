"""Fixtures for the QUO and Gmail emulator tests.

Each emulator is served in-process by `EmulatorServer` (uvicorn on its own event loop in a daemon thread,
bound to a free port) once per module and reset before every test; the webhook receiver is a tiny FastAPI
app served the same way. Tests drive the emulators only through the production clients
(`QuoClient`, `GmailClient`); the control API is used to set up faults/limits and to read the ledger.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from arrears_dispatcher_sms.quo_client import QuoClient
from arrears_emulators.common import EmulatorServer
from arrears_emulators.gmail.app import GmailConfig
from arrears_emulators.gmail.app import create_app as create_gmail_app
from arrears_emulators.quo.app import QuoConfig
from arrears_emulators.quo.app import create_app as create_quo_app
from arrears_shared.providers.gmail import GmailClient
from fastapi import FastAPI, Request, Response

QUO_API_KEY = "quo-test-key"
QUO_FROM = "+15550100000"
QUO_PN_ID = "PNarrears0001"
INVALID_NUMBER = "+15550199999"
UNDELIVERED_NUMBER = "+15550188888"
SIGNING_KEY = "c2lnbmluZy1rZXktZm9yLXRlc3RzLW9ubHk="  # base64("signing-key-for-tests-only")
GMAIL_USER = "collections@arrears.test"


@dataclass
class Control:
    """Synchronous client of an emulator's ``/_emulator`` control API."""

    url: str
    http: httpx.Client

    def reset(self) -> None:
        self.http.post("/_emulator/reset").raise_for_status()

    def faults(self, **spec: Any) -> dict[str, Any]:
        response = self.http.post("/_emulator/faults", json=spec)
        response.raise_for_status()
        return response.json()

    def limits(self, **limits: Any) -> dict[str, Any]:
        response = self.http.put("/_emulator/limits", json=limits)
        response.raise_for_status()
        return response.json()

    def ledger(self, **params: Any) -> dict[str, Any]:
        response = self.http.get("/_emulator/ledger", params=params)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        response = self.http.get("/_emulator/stats")
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(path, json=body)
        response.raise_for_status()
        return response.json()

    def put(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.put(path, json=body)
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def quo_server() -> Iterator[EmulatorServer]:
    config = QuoConfig(
        api_key=QUO_API_KEY,
        phone_numbers={QUO_FROM: QUO_PN_ID},
        invalid_numbers={INVALID_NUMBER},
        undelivered_numbers={UNDELIVERED_NUMBER},
        webhook_signing_key=SIGNING_KEY,
        webhook_initial_backoff_s=0.05,
        webhook_max_backoff_s=0.2,
        delivery_delay_ms=10,
        seed=7,
    )
    with EmulatorServer(create_quo_app(config)) as server:
        yield server


@pytest.fixture
def quo(quo_server: EmulatorServer) -> Iterator[Control]:
    with httpx.Client(base_url=quo_server.url, timeout=10) as http:
        control = Control(quo_server.url, http)
        control.reset()
        yield control
        control.reset()


@pytest.fixture
async def quo_client(quo: Control) -> AsyncIterator[QuoClient]:
    async with QuoClient(api_key=QUO_API_KEY, base_url=quo.url + "/v1", timeout_s=2.0) as client:
        yield client


@dataclass
class Receiver:
    """Webhook receiver: records every request; answers `fail_next` requests with 500 first."""

    url: str = ""
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail_next: int = 0
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def wait_for(self, count: int, timeout_s: float = 5.0) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            await asyncio.sleep(0.01)
        raise AssertionError(f"expected {count} webhook(s), got {len(self.requests)}")


@pytest.fixture(scope="module")
def webhook_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        body = await request.body()
        with receiver.lock:
            if receiver.fail_next > 0:
                receiver.fail_next -= 1
                receiver.failed += 1
                return Response(status_code=500)
            receiver.requests.append((dict(request.headers), body))
        return Response(status_code=204)

    with EmulatorServer(app) as server:
        receiver.url = server.url + "/hook"
        yield receiver


@pytest.fixture
def receiver(webhook_receiver: Receiver) -> Iterator[Receiver]:
    with webhook_receiver.lock:
        webhook_receiver.requests.clear()
        webhook_receiver.fail_next = webhook_receiver.failed = 0
    yield webhook_receiver


@pytest.fixture(scope="module")
def gmail_server() -> Iterator[EmulatorServer]:
    config = GmailConfig(user_email=GMAIL_USER, bouncing_addresses={"gone@example.com"}, seed=7)
    with EmulatorServer(create_gmail_app(config)) as server:
        yield server


@pytest.fixture
def gmail(gmail_server: EmulatorServer) -> Iterator[Control]:
    with httpx.Client(base_url=gmail_server.url, timeout=10) as http:
        control = Control(gmail_server.url, http)
        control.reset()
        yield control
        control.reset()


@pytest.fixture
def gmail_client(gmail: Control) -> Iterator[GmailClient]:
    client = GmailClient.for_emulator(gmail.url, timeout_s=5.0)
    yield client
    client.close()
