"""Running an emulator app: in a background thread (tests, in-process use) or as the main program."""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """Bind (not yet listen) a TCP socket; port 0 lets the OS pick a free port with no race."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose proto says TCP,
    # and accepted connections inherit it. Without it a response written in two parts (uvicorn writes the
    # head, then the body) waits for the client's delayed ACK: ~40 ms per request.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def uvicorn_config(app: FastAPI, *, log_level: str = "warning", graceful_s: int = 1) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level=log_level,
        http="h11",
        ws="none",
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=graceful_s,
        # Google's front ends keep an idle HTTP/1.1 connection for minutes (their load balancers: 610 s), so
        # clients reuse it; uvicorn's 5 s default closed it just as a client reused it (RemoteDisconnected
        # on a sheet read 5 s after the previous one), a failure the real API does not produce.
        timeout_keep_alive=620,
    )


class EmulatorServer:
    """Serves an emulator app with uvicorn on its own event loop in a daemon thread.

    ``with EmulatorServer(create_app(cfg)) as srv: srv.url`` — `stop()` shuts uvicorn down (hanging
    fault requests are released) and joins the thread.
    """

    def __init__(
        self,
        app: FastAPI,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: str = "warning",
        startup_timeout_s: float = 10.0,
    ) -> None:
        self.app = app
        self._sock = bind_socket(host, port)
        self.url = url_of(self._sock)
        self.port: int = self._sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn_config(app, log_level=log_level))
        self._startup_timeout_s = startup_timeout_s
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._server.serve(sockets=[self._sock])

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # surfaced by start()
            self._error = exc

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(target=self._run, name=f"emulator-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout_s
        while not self._server.started:
            if self._error is not None or not self._thread.is_alive():
                raise RuntimeError(f"emulator failed to start: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("emulator did not start in time")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        core = getattr(self.app.state, "emulator_core", None)
        self._server.should_exit = True
        loop = self._loop
        if core is not None and loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(core.faults.release_hanging)
            except RuntimeError:
                pass  # the loop closed between the check and the call
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._sock.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints the ready line right after startup (sockets listening, lifespan done)."""

    def __init__(self, config: uvicorn.Config, ready_line: str) -> None:
        super().__init__(config)
        self._ready_line = ready_line

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            sys.stdout.write(self._ready_line + "\n")
            sys.stdout.flush()


async def serve_main(app: FastAPI, *, name: str, host: str, port: int, log_level: str = "info") -> None:
    """Serve until SIGINT/SIGTERM; print ``EMULATOR <name> ready <url>`` once listening."""
    sock = bind_socket(host, port)
    server = _AnnouncingServer(
        uvicorn_config(app, log_level=log_level), f"EMULATOR {name} ready {url_of(sock)}"
    )
    try:
        await server.serve(sockets=[sock])
    finally:
        sock.close()
