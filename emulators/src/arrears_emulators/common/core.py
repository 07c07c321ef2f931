"""`EmulatorCore`: the state every emulator shares (ledger, faults, rate limiter, stats) and the gate each
API handler passes through (auth is the emulator's own business; then rate limit, then faults)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, Field
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arrears_emulators.common.faults import FaultInjector, FaultOutcome
from arrears_emulators.common.ledger import Ledger
from arrears_emulators.common.ratelimit import LimitsConfig, RateLimiter

CONTROL_PREFIX = "/_emulator"

ResetHook = Callable[[], Awaitable[None] | None]


class StatsView(BaseModel):
    emulator: str
    requests_total: int
    by_operation: dict[str, int]
    by_status: dict[str, int]
    rate_limited: int = Field(description="number of 429 answers")
    faults_injected: dict[str, int]
    ledger_size: int
    extra: dict[str, Any] = Field(default_factory=dict)


class Stats:
    def __init__(self) -> None:
        self.requests_total = 0
        self.by_operation: dict[str, int] = {}
        self.by_status: dict[str, int] = {}

    def record_status(self, status: int) -> None:
        self.requests_total += 1
        key = str(status)
        self.by_status[key] = self.by_status.get(key, 0) + 1

    def record_operation(self, operation: str) -> None:
        self.by_operation[operation] = self.by_operation.get(operation, 0) + 1

    def clear(self) -> None:
        self.requests_total = 0
        self.by_operation.clear()
        self.by_status.clear()


class GateResult(BaseModel):
    """Outcome of `EmulatorCore.gate`. Exactly one of the first two may be set."""

    retry_after_s: float | None = Field(None, description="rate limited: answer 429 with Retry-After")
    fail_status: int | None = Field(None, description="injected failure: answer with this 5xx")
    drop_after: bool = Field(False, description="process the request, then answer with a DroppedResponse")

    @classmethod
    def from_faults(cls, outcome: FaultOutcome) -> GateResult:
        return cls(fail_status=outcome.fail_status, drop_after=outcome.drop_after)


class EmulatorCore:
    """Shared emulator state. All methods run on the emulator's event loop (handlers are ``async def``)."""

    def __init__(self, name: str, *, limits: LimitsConfig, seed: int | None = None) -> None:
        self.name = name
        self.ledger = Ledger(name)
        self.faults = FaultInjector(seed)
        self.initial_limits = limits.model_copy()
        self.limiter = RateLimiter(limits.model_copy())
        self.stats = Stats()
        self._reset_hooks: list[ResetHook] = []
        self._extra_stats: list[Callable[[], dict[str, Any]]] = []

    @property
    def limits(self) -> LimitsConfig:
        return self.limiter.config

    def on_reset(self, hook: ResetHook) -> None:
        """Register emulator-specific state to clear on ``POST /_emulator/reset``."""
        self._reset_hooks.append(hook)

    def add_stats(self, provider: Callable[[], dict[str, Any]]) -> None:
        """Register a function whose dict is merged into ``GET /_emulator/stats`` under ``extra``."""
        self._extra_stats.append(provider)

    async def reset(self) -> None:
        self.ledger.clear()
        self.faults.clear()
        self.limiter.replace(self.initial_limits)
        self.stats.clear()
        for hook in self._reset_hooks:
            result = hook()
            if inspect.isawaitable(result):
                await result

    async def gate(self, operation: str, *, key: str, cost: float = 1.0) -> GateResult:
        """Count the operation, apply the rate limit for `key`, then fault injection (which may sleep)."""
        self.stats.record_operation(operation)
        wait = self.limiter.acquire(key, cost)
        if wait is not None:
            return GateResult(retry_after_s=wait)
        return GateResult.from_faults(await self.faults.apply(operation))

    def stats_view(self) -> StatsView:
        extra: dict[str, Any] = {}
        for provider in self._extra_stats:
            extra.update(provider())
        return StatsView(
            emulator=self.name,
            requests_total=self.stats.requests_total,
            by_operation=dict(self.stats.by_operation),
            by_status=dict(self.stats.by_status),
            rate_limited=self.stats.by_status.get("429", 0),
            faults_injected=dict(self.faults.injected),
            ledger_size=len(self.ledger),
            extra=extra,
        )


class DroppedResponse(Response):
    """Sends the status line, the headers (with the full Content-Length) and half of the body, then abandons
    the response: the server closes the connection, and the client sees a truncated response after the
    request was processed — the "accepted, but did the provider get it?" case."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send(
            {"type": "http.response.body", "body": self.body[: len(self.body) // 2], "more_body": True}
        )


class StatsMiddleware:
    """Pure ASGI middleware counting response statuses of API (non-control) requests."""

    def __init__(self, app: ASGIApp, core: EmulatorCore) -> None:
        self.app = app
        self.core = core

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.core.stats.record_status(int(message["status"]))
            await send(message)

        await self.app(scope, receive, counting_send)


# Webhook deliveries in flight at once, per emulator. Providers deliver webhooks from a bounded pool (a slow
# receiver sees a steady stream, not every pending event at once); an unbounded number of tasks all waiting
# on one httpx pool costs the emulator CPU quadratic in the backlog (httpcore matches every waiting request
# against every connection on each change).
WEBHOOK_CONCURRENCY = 16
