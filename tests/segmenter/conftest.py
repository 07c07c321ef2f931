from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.fixture(scope="module")
def segmenter_url(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("segmenter")
    upgrade(url, "segmenter")
    return url


@pytest.fixture
async def engine(segmenter_url: str) -> AsyncIterator[AsyncEngine]:
    e = make_engine(segmenter_url)
    yield e
    await e.dispose()
