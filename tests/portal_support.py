"""The debtor portal hosted in-process for tests: its settings against the test broker and a fresh database
(fast polls, no Secure cookie over plain HTTP, no rate limit in the way), and any service definition served
with an ASGI client. Each module adds only what it tests (`portal_settings(..., portal_pay_min_minor=500)`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from arrears_portal.settings import PortalSettings
from arrears_shared.service import ServiceDefinition, ServiceHost
from fastapi import FastAPI


def portal_settings(broker: Any, database_url: str, link_key: str, **overrides: Any) -> PortalSettings:
    base: dict[str, Any] = {
        "kafka_bootstrap_servers": broker.bootstrap_servers,
        "database_url": database_url,
        "link_key": link_key,
        "runner_poll_timeout_ms": 100,
        "outbox_poll_s": 0.02,
        "portal_cookie_secure": False,
        "portal_rate_per_minute": 10_000,
    }
    return PortalSettings(**(base | overrides))


@asynccontextmanager
async def hosted(
    definition: ServiceDefinition, base_url: str = "http://portal"
) -> AsyncIterator[tuple[ServiceHost, httpx.AsyncClient, FastAPI]]:
    """The service started (consumers, loops, relay) with an in-process client; stopped on the way out."""
    host = ServiceHost(definition)
    app = host.build_app()
    await host.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url) as client:
            yield host, client, app
    finally:
        await host.stop()
