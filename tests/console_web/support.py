"""Console (and escalation) service hosts in-process for the web page tests: the real app, database and
broker, with only the parts a page needs (no event consumers; loops as each test asks)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
from arrears_console.__main__ import definition as console_definition
from arrears_console.settings import ConsoleSettings
from arrears_shared.service import Loop, ServiceHost


def settings(broker: Any, database_url: str, **kw: Any) -> dict[str, Any]:
    return {
        "kafka_bootstrap_servers": broker.bootstrap_servers,
        "database_url": database_url,
        "runner_poll_timeout_ms": 100,
        "outbox_poll_s": 0.05,
        **kw,
    }


@asynccontextmanager
async def console_host(
    broker: Any, database_url: str, loops: Sequence[Loop] = (), **kw: Any
) -> AsyncIterator[tuple[ServiceHost, httpx.AsyncClient]]:
    d = console_definition(ConsoleSettings(**settings(broker, database_url, **kw)))
    d.consumers, d.loops = [], list(loops)
    host = ServiceHost(d)
    app = host.build_app()
    await host.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as c:
            yield host, c
    finally:
        await host.stop()
