"""Helpers of the console supervisor tests: a service host on a real port, signed-in console clients."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import html
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from arrears_emulators.common.server import EmulatorServer
from arrears_shared.service import ServiceDefinition, ServiceHost
from sqlalchemy.ext.asyncio import AsyncEngine

SUPERVISOR = "sup-sofia"  # the supervisor key's name: the loader / actor every record must show


class HostServer(EmulatorServer):
    """A service host served by uvicorn on a real local port, on its own event loop in a thread (as
    `EmulatorServer` serves an emulator): the host starts (database, migrations, broker, routers) on that
    loop before uvicorn listens, and stops after it. No consumers or loops: the test drives those."""

    def __init__(self, definition: ServiceDefinition) -> None:
        self.host = ServiceHost(dataclasses.replace(definition, consumers=(), loops=()))
        super().__init__(self.host.build_app(), startup_timeout_s=60.0)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.host.start()
        try:
            await self._server.serve(sockets=[self._sock])
        finally:
            await self.host.stop()


@dataclass
class Stack:
    app: Any  # the console's ASGI app
    engine: AsyncEngine
    keys: dict[str, str]

    @contextlib.asynccontextmanager
    async def signed_in(self, role: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
        """A console client signed in as `role` through the login form (session cookie), and its CSRF token."""
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
            r = await client.post("/login", data={"api_key": self.keys[role]})
            assert r.status_code == 303, r.text
            page = await client.get("/")
            found = re.search(r"csrf_token=([^\"&]+)", page.text)
            assert found, page.text[:500]
            yield client, html.unescape(found.group(1))


def hidden(page: str, name: str) -> str:
    """The value of the hidden input `name` in a page, unescaped."""
    found = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)"', page)
    assert found, f"no hidden {name}"
    return html.unescape(found.group(1))
