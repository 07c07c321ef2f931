"""The console in-process (ASGI) with the segmenter and escalation served on real local ports, so the console's
upstream calls go over HTTP as in production; one database (shared `iam`: sessions and keys work everywhere),
a real broker, real API keys and console sessions."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from arrears_console.__main__ import definition as console_definition
from arrears_console.settings import ConsoleSettings
from arrears_escalation.__main__ import definition as escalation_definition
from arrears_escalation.settings import EscalationSettings
from arrears_segmenter.__main__ import definition as segmenter_definition
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.service import ServiceHost
from auth_support import issue_key_async

from .support import SUPERVISOR, HostServer, Stack


@pytest.fixture(scope="module")
def stack_url(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("console_supervisor")
    for schema in ("iam", "segmenter", "escalation", "console"):
        upgrade(url, schema)
    return url


@pytest.fixture(scope="module")
def upstream_servers(broker: Any, stack_url: str) -> Iterator[dict[str, str]]:
    env = {"ARREARS_DATABASE_URL": stack_url, "ARREARS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        segmenter = segmenter_definition()
        escalation = escalation_definition(EscalationSettings(service_name="escalation"))
    with HostServer(segmenter) as seg, HostServer(escalation) as esc:
        yield {"segmenter": seg.url, "escalation": esc.url}


@pytest.fixture(scope="module")
async def stack(broker: Any, stack_url: str, upstream_servers: dict[str, str]) -> AsyncIterator[Stack]:
    settings = ConsoleSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=stack_url,
        console_segmenter_url=upstream_servers["segmenter"],
        console_escalation_url=upstream_servers["escalation"],
        auth_cookie_secure=False,  # plain http in the test
    )
    host = ServiceHost(dataclasses.replace(console_definition(settings), consumers=(), loops=()))
    app = host.build_app()
    await host.start()
    assert host.ctx is not None
    async with host.ctx.engine.begin() as conn:
        keys = {
            "viewer": await issue_key_async(conn, "viewer"),
            "collector": await issue_key_async(conn, "collector"),
            "supervisor": await issue_key_async(conn, "supervisor", name=SUPERVISOR),
        }
    engine = make_engine(stack_url)
    try:
        yield Stack(app, engine, keys)
    finally:
        await engine.dispose()
        await host.stop()
