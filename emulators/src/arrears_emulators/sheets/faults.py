"""Deterministic fault injection for the Sheets API routes (never for ``/_emulator``)."""

from __future__ import annotations

import asyncio

from .errors import SheetsApiError
from .models import FaultSpec, FaultState


class FaultInjector:
    """Holds pending faults and applies them, in order, to each API request.

    Order per request: outage (503) -> pending errors (the given status) -> pending timeouts (hang, then
    504) -> slow (sleep, then serve). ``clear()`` also releases requests currently hanging.
    """

    def __init__(self, default_timeout_s: float) -> None:
        self._default_timeout_s = default_timeout_s
        self._release = asyncio.Event()
        self.injected = 0
        self.clear()

    def clear(self) -> None:
        self.outage = False
        self.errors: list[list[int]] = []  # [status, remaining]
        self.timeouts = 0
        self.timeout_s = self._default_timeout_s
        self.slow_ms = 0
        self.slow_remaining: int | None = 0
        # wake every request that is hanging on a timeout fault, then arm a fresh event
        self._release.set()
        self._release = asyncio.Event()

    def add(self, spec: FaultSpec) -> None:
        count = spec.count
        if spec.kind == "outage":
            self.outage = spec.enabled
        elif spec.kind == "error":
            if count:
                self.errors.append([spec.status, count])
        elif spec.kind == "timeout":
            self.timeouts += count or 0
            if spec.seconds is not None:
                self.timeout_s = spec.seconds
        else:
            self.slow_ms = spec.ms
            self.slow_remaining = count

    def state(self) -> FaultState:
        return FaultState(
            outage=self.outage,
            pending_errors=[(s, n) for s, n in self.errors],
            pending_timeouts=self.timeouts,
            timeout_s=self.timeout_s,
            slow_ms=self.slow_ms,
            slow_remaining=self.slow_remaining,
        )

    async def apply(self) -> None:
        """Raise the injected error for this request, hang, or delay it; return to serve it normally."""
        if self.outage:
            self.injected += 1
            raise SheetsApiError(503)
        if self.errors:
            entry = self.errors[0]
            entry[1] -= 1
            if entry[1] <= 0:
                self.errors.pop(0)
            self.injected += 1
            raise SheetsApiError(entry[0])
        if self.timeouts > 0:
            self.timeouts -= 1
            self.injected += 1
            release = self._release
            try:
                await asyncio.wait_for(release.wait(), timeout=self.timeout_s)
            except TimeoutError:
                pass
            raise SheetsApiError(504)
        if self.slow_ms and (self.slow_remaining is None or self.slow_remaining > 0):
            if self.slow_remaining is not None:
                self.slow_remaining -= 1
            await asyncio.sleep(self.slow_ms / 1000)
