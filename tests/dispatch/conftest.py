from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from arrears_emulators.common import EmulatorServer
from arrears_emulators.gmail.app import GmailConfig
from arrears_emulators.gmail.app import create_app as create_gmail
from arrears_emulators.quo.app import QuoConfig
from arrears_emulators.quo.app import create_app as create_quo

from .helpers import FROM_NUMBER, SENDER


@pytest.fixture
def quo() -> Iterator[Any]:
    """A fresh QUO emulator per test (its own ledger, 10 rps per key like the real API)."""
    with EmulatorServer(create_quo(QuoConfig(phone_numbers={FROM_NUMBER: "PNarrearsTest1"}))) as srv:
        yield srv


@pytest.fixture
def gmail() -> Iterator[Any]:
    with EmulatorServer(create_gmail(GmailConfig(user_email=SENDER))) as srv:
        yield srv
