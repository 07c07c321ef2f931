"""A local OpenID Connect issuer (keys generated here, in the test) and a database with the `iam` schema."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from arrears_emulators.common import EmulatorServer
from arrears_emulators.oidc.app import IssuerState, SigningKey, create_app, new_rsa_key
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from sqlalchemy.ext.asyncio import AsyncEngine


@pytest.fixture(scope="module")
def signing_key() -> SigningKey:
    return new_rsa_key("test-key-1")


@pytest.fixture(scope="module")
def issuer(signing_key: SigningKey) -> Iterator[tuple[str, IssuerState]]:
    state = IssuerState(keys=[signing_key])
    with EmulatorServer(create_app(state)) as server:
        yield server.url, state


@pytest.fixture(scope="module")
def iam_url(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("iam")
    upgrade(url, "iam")
    return url


@pytest.fixture
async def iam_engine(iam_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(iam_url)
    yield engine
    await engine.dispose()
