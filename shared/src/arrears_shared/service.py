"""ServiceHost: starts one service process the same way everywhere.

Order: logging -> HTTP server (so /healthz answers during start-up) -> database (retry with a one-line error
naming what is unreachable and which setting configures it) -> migrations -> broker -> outbox relay,
consumers and background loops -> wait for SIGTERM/SIGINT -> graceful stop (finish the batch in hand,
commit, leave the group) within the grace period.

A service's `__main__` only declares its consumers, routers and background loops; everything else is here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import uvicorn
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from . import telemetry, topology
from .audit.coverage import AuditEveryChange
from .audit.monitor import audit_chain_loop
from .auth.gate import Authenticator
from .db.engine import make_engine, schema_for
from .db.migrate import upgrade
from .http import Health, create_app
from .redact import describe_error
from .settings import ServiceSettings
from .stream.relay import OutboxRelay, make_producer
from .stream.runner import BatchHandler, StreamRunner
from .stream.transaction import Transaction
from .stream.waking import waking_transaction
from .vault.keys import vault

log = logging.getLogger(__name__)


@dataclass
class Consumer:
    handler: BatchHandler
    topics: Sequence[str] | None = None  # defaults to what the service's topology declares it consumes
    group: str | None = None  # defaults to the service name


@dataclass
class Context:
    """What a service's loops and API handlers get once the host is up."""

    settings: ServiceSettings
    service: str
    schema: str
    engine: AsyncEngine
    producer: AIOKafkaProducer
    relay: OutboxRelay
    stopping: asyncio.Event
    extra: dict[str, Any] = field(default_factory=dict)

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Transaction]:
        """State change + events atomically; wakes the relay after commit."""
        return waking_transaction(
            self.engine, self.schema, self.service, lambda: self.relay.wake(), always=True
        )

    async def sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; returns False when the service is stopping."""
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
            return False
        except TimeoutError:
            return True


Loop = Callable[[Context], Awaitable[None]]
RouterFactory = Callable[[Callable[[], Context]], APIRouter]


@dataclass
class ServiceDefinition:
    name: str
    settings: ServiceSettings
    consumers: Sequence[Consumer] = ()
    routers: Sequence[RouterFactory] = ()
    loops: Sequence[Loop] = ()
    on_start: Callable[[Context], Awaitable[None]] | None = None
    readiness: dict[str, Callable[[Context], Awaitable[tuple[bool, Any]]]] = field(default_factory=dict)
    body_limits: dict[str, int] = field(default_factory=dict)  # path prefix -> max request body bytes
    login_path: str | None = None  # where a browser without a credential is sent (the console's sign-in)


def describe_db(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get(
        "host", "?"
    )
    return f"{host}{':' + str(parts.port) if parts.port else ''}{parts.path}"


def _declared_consumers(d: ServiceDefinition) -> list[Consumer]:
    """The definition's consumers with their topics taken from (or checked against) the service's declared
    topology: a service cannot read a topic its declaration, and so its DLQs, ACLs and docs, do not name."""
    declared = topology.find(d.name)
    if declared is None:  # a test's or a benchmark's own service: no declaration to hold it to
        if any(c.topics is None for c in d.consumers):
            raise topology.TopologyError(f"{d.name} declares no topology, so its consumers must name topics")
        return list(d.consumers)
    out = [
        c if c.topics is not None else Consumer(c.handler, declared.consumes, c.group) for c in d.consumers
    ]
    read = {t for c in out for t in c.topics or ()}
    if d.consumers and read != set(declared.consumes):
        raise topology.TopologyError(
            f"{d.name} consumes {sorted(read)} but its topology declares {sorted(declared.consumes)}; "
            f"change {declared.package}/topology.py (and regenerate the manifests) or the consumer"
        )
    return out


class ServiceHost:
    def __init__(self, definition: ServiceDefinition) -> None:
        self.d = definition
        self.s = definition.settings
        self.name = definition.name
        self.schema = schema_for(definition.name)
        self.health = Health()
        self.stopping = asyncio.Event()
        self.ctx: Context | None = None
        self.runners: list[StreamRunner] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._dead_tasks: list[str] = []
        self._db_ok = False
        self._engine: AsyncEngine | None = None
        self._producer: AIOKafkaProducer | None = None
        self.authenticator = Authenticator(self.s)
        self.consumers = _declared_consumers(definition)

    def _context(self) -> Context:
        if self.ctx is None:
            from fastapi import HTTPException

            raise HTTPException(503, "service is starting")
        return self.ctx

    def build_app(self) -> FastAPI:
        self.health.liveness["consumers"] = self._live_consumers
        self.health.liveness["tasks"] = lambda: (not self._dead_tasks, self._dead_tasks or "running")
        self.health.readiness["database"] = self._ready_db
        self.health.readiness["broker"] = self._ready_broker
        self.health.readiness["consumers"] = self._ready_consumers
        for name, check in self.d.readiness.items():
            self.health.readiness[name] = self._bind(check)
        app = create_app(
            self.name,
            self.health,
            [f(self._context) for f in self.d.routers],
            authenticator=self.authenticator,
            max_body_bytes=self.s.http_max_body_bytes,
            body_limits=self.d.body_limits,
            login_path=self.d.login_path,
        )
        app.add_middleware(AuditEveryChange, get_context=lambda: self.ctx)  # every change audited
        return app

    def _bind(
        self, check: Callable[[Context], Awaitable[tuple[bool, Any]]]
    ) -> Callable[[], Awaitable[tuple[bool, Any]]]:
        async def run() -> tuple[bool, Any]:
            if self.ctx is None:
                return False, "starting"
            return await check(self.ctx)

        return run

    def _live_consumers(self) -> tuple[bool, Any]:
        stuck = [r.group for r in self.runners if r.state.stuck(self.s.runner_stuck_after_s)]
        return (not stuck, {"stuck": stuck} if stuck else "progressing")

    async def _ready_db(self) -> tuple[bool, Any]:
        if self._engine is None:
            return False, "connecting"
        async with self._engine.connect() as c:
            await c.execute(text("SELECT 1"))
        return True, "ok"

    async def _ready_broker(self) -> tuple[bool, Any]:
        if self._producer is None:
            return False, "connecting"
        client = self._producer.client
        ok = await client.ready(client.get_random_node()) if client.cluster.brokers() else False
        return bool(ok), "ok" if ok else "no broker connection"

    async def _ready_consumers(self) -> tuple[bool, Any]:
        detail: dict[str, dict[str, Any]] = {}
        for r in self.runners:  # a group may have several members here (lanes): one entry, their sum
            g = detail.setdefault(
                r.group, {"joined": True, "partitions": 0, "waiting_on": None, "topics": [], "lanes": []}
            )
            g["joined"] = g["joined"] and r.state.joined
            g["partitions"] += len(r.state.assigned)
            g["waiting_on"] = g["waiting_on"] or r.state.waiting_on_infrastructure
            g["topics"] += [t for t in r.topics if t not in g["topics"]]
            g["lanes"].append(list(r.topics))
        ok = len(self.runners) == len(self.consumers) and all(
            r.state.joined and not r.state.waiting_on_infrastructure for r in self.runners
        )
        return ok, detail

    # -- start-up --------------------------------------------------------------------------------------
    async def _connect_db(self) -> AsyncEngine:
        url = self.s.database_url.get_secret_value()
        engine = make_engine(url, pool_size=self.s.database_pool_size, application_name=self.name)
        while True:
            try:
                async with engine.connect() as c:
                    await c.execute(text("SELECT 1"))
                return engine
            except Exception as e:
                log.error(
                    f"database unreachable at {describe_db(url)} (ARREARS_DATABASE_URL): "
                    f"{describe_error(e)}; retrying in {self.s.startup_retry_s}s"
                )
                if not await self._sleep(self.s.startup_retry_s):
                    raise asyncio.CancelledError from e

    async def _connect_broker(self) -> AIOKafkaProducer:
        while True:
            producer = make_producer(self.s, f"{self.name}-relay")
            try:
                await producer.start()
                return producer
            except Exception as e:
                with contextlib.suppress(Exception):
                    await producer.stop()
                log.error(
                    f"Kafka broker unreachable at {self.s.kafka_bootstrap_servers} (ARREARS_KAFKA_BOOTSTRAP_SERVERS,"
                    f" protocol {self.s.kafka_security_protocol}): {describe_error(e)};"
                    f" retrying in {self.s.startup_retry_s}s"
                )
                if not await self._sleep(self.s.startup_retry_s):
                    raise asyncio.CancelledError from e

    async def _sleep(self, s: float) -> bool:
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=s)
            return False
        except TimeoutError:
            return True

    def _spawn(self, name: str, coro_fn: Callable[[], Awaitable[None]], *, restart: bool = True) -> None:
        async def supervised() -> None:
            delay = 1.0
            while not self.stopping.is_set():
                try:
                    await coro_fn()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("background task crashed", extra={"task": name})
                    if not restart:
                        self._dead_tasks.append(name)
                        return
                    await self._sleep(delay)
                    delay = min(delay * 2, 30.0)

        self._tasks.append(asyncio.create_task(supervised(), name=name))

    async def start(self) -> Context:
        self._engine = await self._connect_db()
        url = self.s.database_url.get_secret_value()
        await asyncio.to_thread(upgrade, url, "iam")  # API keys and sessions, shared by every service
        vault()  # fails fast, naming the variables, without the vault's master and index keys
        await asyncio.to_thread(upgrade, url, self.name)  # and the vault schema it depends on
        self.authenticator.bind(self._engine)
        self._producer = await self._connect_broker()
        relay = OutboxRelay(
            engine=self._engine,
            schema=self.schema,
            producer=self._producer,
            settings=self.s,
            service=self.name,
        )
        self.ctx = Context(self.s, self.name, self.schema, self._engine, self._producer, relay, self.stopping)
        if self.d.on_start:
            await self.d.on_start(self.ctx)
        self._spawn("outbox-relay", relay.run)
        for c in self.consumers:
            runner = StreamRunner(
                group=c.group or self.name,
                topics=c.topics or (),
                handler=c.handler,
                engine=self._engine,
                schema=self.schema,
                settings=self.s,
                service=self.name,
                on_commit=relay.wake,
            )
            self.runners.append(runner)
            self._spawn(f"consumer-{runner.group}", runner.run)
        ctx = self.ctx
        # the hourly audit-chain check every service runs (one replica per round; docs/runbooks.md)
        self._spawn("audit-chain-check", lambda: audit_chain_loop(ctx))
        for loop in self.d.loops:
            self._spawn(getattr(loop, "__name__", "loop"), lambda loop=loop: loop(ctx))  # type: ignore[misc]
        log.info("service started", extra={"consumers": [r.group for r in self.runners]})
        return ctx

    async def stop(self) -> None:
        self.stopping.set()
        for r in self.runners:
            r.stop()
        if self.ctx:
            self.ctx.relay.stop()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=max(1.0, self.s.shutdown_grace_s - 2))
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._producer:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), 3)
        if self._engine:
            await self._engine.dispose()


class _HttpServer(uvicorn.Server):
    """SIGTERM/SIGINT belong to the service host (stop consuming, commit, leave the group, then stop HTTP),
    not to uvicorn, which would otherwise take them over while it serves."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(definition: ServiceDefinition) -> None:
    s = definition.settings
    telemetry.configure_logging(definition.name, s.log_level, s.log_format)
    host = ServiceHost(definition)
    app = host.build_app()
    server = _HttpServer(
        uvicorn.Config(
            app, host=s.http_host, port=s.http_port, log_config=None, access_log=False, lifespan="off"
        )
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, host.stopping.set)
    http_task = asyncio.create_task(server.serve(), name="http")
    started = time.monotonic()
    try:
        start_task = asyncio.create_task(host.start())
        stop_wait = asyncio.create_task(host.stopping.wait())
        await asyncio.wait({start_task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if start_task.done() and not start_task.cancelled() and start_task.exception() is None:
            log.info("ready", extra={"startup_s": round(time.monotonic() - started, 2), "port": s.http_port})
            await host.stopping.wait()
        else:
            start_task.cancel()
            await asyncio.gather(start_task, return_exceptions=True)
            if start_task.done() and not start_task.cancelled() and start_task.exception():
                raise start_task.exception()  # type: ignore[misc]
        stop_wait.cancel()
    finally:
        log.info("stopping")
        await host.stop()
        server.should_exit = True
        await asyncio.gather(http_task, return_exceptions=True)
        log.info("stopped")


def main(definition_factory: Callable[[], ServiceDefinition]) -> None:
    """Entry point body for `python -m arrears_<service>`.

    Once `serve` has returned, everything that matters is durable (batches committed, offsets committed,
    group left, outbox relayed or left for the next relay). The process then exits at once instead of
    waiting for interpreter teardown and idle executor threads (a blocking provider call can hold one for
    its whole timeout), so that a SIGTERM stop fits the grace period even on a loaded machine.
    """
    code = 0
    try:
        asyncio.run(serve(definition_factory()))
    except KeyboardInterrupt:
        code = 130
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
