from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.fixture(scope="module")
def escalation_url(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("escalation")
    upgrade(url, "escalation")
    return url


@pytest.fixture
async def engine(escalation_url: str) -> AsyncIterator[AsyncEngine]:
    e = make_engine(escalation_url)
    yield e
    await e.dispose()
