"""Helpers of the console's operations tests: services served over real local HTTP ports, and waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from arrears_emulators.common.server import bind_socket, url_of


@asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app (a started ServiceHost's app) on a free local port, on this event loop: the host's
    database pool and Kafka clients belong to this loop, so the app must run on it too. Yields the URL."""
    sock = bind_socket()
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False, http="h11", ws="none")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert not task.done(), "the server did not start"
            assert time.monotonic() < deadline, "the server did not start in time"
            await asyncio.sleep(0.02)
        yield url_of(sock)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def eventually(
    check: Callable[[], Awaitable[Any]], within_s: float = 30.0, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
