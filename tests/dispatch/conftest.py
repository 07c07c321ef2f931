from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from arrears_dispatcher_sms.__main__ import build_engine
from arrears_emulators.common import EmulatorServer
from arrears_emulators.gmail.app import GmailConfig
from arrears_emulators.gmail.app import create_app as create_gmail
from arrears_emulators.quo.app import QuoConfig
from arrears_emulators.quo.app import create_app as create_quo
from arrears_shared.db.migrate import upgrade
from arrears_shared.delivery import DeliveryEngine, allow_all

from .helpers import FROM_NUMBER, SENDER, bound, sms_settings


@pytest.fixture
def quo() -> Iterator[Any]:
    """A fresh QUO emulator per test (its own ledger, 10 rps per key like the real API)."""
    with EmulatorServer(create_quo(QuoConfig(phone_numbers={FROM_NUMBER: "PNarrearsTest1"}))) as srv:
        yield srv


@pytest.fixture
def gmail() -> Iterator[Any]:
    with EmulatorServer(create_gmail(GmailConfig(user_email=SENDER))) as srv:
        yield srv


@pytest.fixture
async def db(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("dispatch_sms")
    await asyncio.to_thread(upgrade, url, "dispatcher-sms")
    return url


@pytest.fixture
async def make(quo: Any, db: str) -> AsyncIterator[Callable[..., DeliveryEngine]]:
    made: list[Any] = []

    def factory(gate: Any = allow_all, **kw: Any) -> DeliveryEngine:
        eng, ae = bound(
            build_engine(sms_settings(quo.url, db, **kw), gate=gate), db, "dispatcher_sms", "dispatcher-sms"
        )
        made.append((eng, ae))
        return eng

    yield factory
    for eng, ae in made:
        await eng.channel.aclose()  # type: ignore[attr-defined]
        await ae.dispose()
