"""Fixtures for the Sheets emulator tests: the emulator served by uvicorn in a background thread.

Imported explicitly by the test modules that need it (``from tests.emulators.conftest_sheets import ...``
or ``from .conftest_sheets import ...``), so it does not collide with the shared conftest files.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from arrears_emulators.sheets import SheetsEmulatorConfig, create_app


class ServerThread:
    """Serve an ASGI app on a free 127.0.0.1 port in a daemon thread; ``stop()`` joins it."""

    def __init__(self, app: object) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            app,  # type: ignore[arg-type]
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("sheets emulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()
        if self._thread.is_alive():
            raise RuntimeError("sheets emulator thread did not stop")


@dataclass
class SheetsEmulator:
    url: str
    control: httpx.Client

    def reset(self) -> None:
        self.control.post("/_emulator/reset").raise_for_status()

    def load(self, spreadsheet_id: str, sheets: dict[str, list[list[object]]], title: str = "PME") -> None:
        body = {"spreadsheet_id": spreadsheet_id, "title": title, "sheets": sheets}
        self.control.post("/_emulator/spreadsheets", json=body).raise_for_status()

    def limits(self, **limits: object) -> None:
        self.control.put("/_emulator/limits", json=limits).raise_for_status()

    def fault(self, **spec: object) -> None:
        self.control.post("/_emulator/faults", json=spec).raise_for_status()

    def stats(self) -> dict[str, object]:
        response = self.control.get("/_emulator/stats")
        response.raise_for_status()
        return response.json()

    def dump(self, spreadsheet_id: str) -> dict[str, object]:
        response = self.control.get(f"/_emulator/spreadsheets/{spreadsheet_id}")
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def sheets_server() -> Iterator[ServerThread]:
    server = ServerThread(create_app(SheetsEmulatorConfig())).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sheets_emulator(sheets_server: ServerThread) -> Iterator[SheetsEmulator]:
    with httpx.Client(base_url=sheets_server.url, timeout=30) as control:
        emulator = SheetsEmulator(url=sheets_server.url, control=control)
        emulator.reset()
        yield emulator
        emulator.reset()
