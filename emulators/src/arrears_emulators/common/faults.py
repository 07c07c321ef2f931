"""Fault injection shared by all emulators.

Four fault kinds, each configured with a deterministic count (``next``: the next N matching requests) and/or
a probability (drawn from a seeded RNG):

- ``error_5xx`` — answer with ``status`` (500 or 503 by default 503) before doing anything.
- ``timeout`` — hang for ``hang_s`` (longer than the client's timeout) and then answer 504 without doing
  anything; with ``process_after=true`` the request is processed after the hang instead (a late accept).
- ``slow`` — delay ``delay_ms`` and then process normally.
- ``accept_then_drop`` — process the request (a send is recorded in the ledger) and then drop the connection
  half-way through the response, so the client cannot tell whether it was accepted.

Only API requests are affected, never ``/_emulator/*``. ``operations`` limits a fault to named operations
(e.g. ``["send"]`` for QUO, ``["messages.send"]`` for Gmail). Requests refused by auth or by the rate
limiter do not consume a ``next`` count. When several kinds fire for one request the order is
``timeout``, ``error_5xx``, ``accept_then_drop`` (first wins); ``slow`` applies in addition.
"""

from __future__ import annotations

import asyncio
import random
from typing import Literal

from pydantic import BaseModel, Field

FaultKind = Literal["error_5xx", "timeout", "slow", "accept_then_drop"]
FAULT_KINDS: tuple[FaultKind, ...] = ("timeout", "error_5xx", "accept_then_drop", "slow")


class FaultSpec(BaseModel):
    next: int = Field(0, ge=0, description="fire on the next N matching requests (deterministic)")
    probability: float = Field(0.0, ge=0.0, le=1.0, description="fire with this probability afterwards")
    operations: list[str] | None = Field(None, description="only these operations (default: all)")
    status: int = Field(503, ge=500, le=599, description="error_5xx: status to answer")
    delay_ms: int = Field(500, ge=0, description="slow: added latency")
    hang_s: float = Field(30.0, ge=0.0, description="timeout: how long to hang")
    process_after: bool = Field(False, description="timeout: process the request after hanging")

    def applies_to(self, operation: str) -> bool:
        return self.operations is None or operation in self.operations

    @property
    def active(self) -> bool:
        return self.next > 0 or self.probability > 0


class FaultsUpdate(BaseModel):
    """Body of ``POST /_emulator/faults``. Kinds given replace their current spec; ``clear`` removes all first."""

    clear: bool = False
    seed: int | None = None
    error_5xx: FaultSpec | None = None
    timeout: FaultSpec | None = None
    slow: FaultSpec | None = None
    accept_then_drop: FaultSpec | None = None


class FaultsView(BaseModel):
    error_5xx: FaultSpec | None = None
    timeout: FaultSpec | None = None
    slow: FaultSpec | None = None
    accept_then_drop: FaultSpec | None = None
    injected: dict[str, int] = Field(default_factory=dict)


class FaultOutcome(BaseModel):
    """What the handler must do for this request after the injector ran (sleeps are already done)."""

    fail_status: int | None = Field(None, description="answer with this 5xx and do nothing")
    drop_after: bool = Field(False, description="process, then drop the response")
    fired: list[str] = Field(default_factory=list)


class FaultInjector:
    """Holds fault specs and decides per request. Used from the emulator's event loop only."""

    def __init__(self, seed: int | None = None) -> None:
        self._seed = seed
        self._rng = random.Random(seed)
        self._specs: dict[str, FaultSpec] = {}
        self.injected: dict[str, int] = {}
        self._release = asyncio.Event()

    def update(self, update: FaultsUpdate) -> None:
        if update.clear:
            self._specs.clear()
        if update.seed is not None:
            self._rng = random.Random(update.seed)
        for kind in FAULT_KINDS:
            spec = getattr(update, kind)
            if spec is not None:
                self._specs[kind] = spec.model_copy()

    def clear(self) -> None:
        self._specs.clear()
        self.injected.clear()
        self._rng = random.Random(self._seed)
        self.release_hanging()

    def release_hanging(self) -> None:
        """Wake every request currently hanging in a ``timeout`` fault (used by reset and shutdown)."""
        self._release.set()
        self._release = asyncio.Event()

    def view(self) -> FaultsView:
        return FaultsView(
            error_5xx=self._specs.get("error_5xx"),
            timeout=self._specs.get("timeout"),
            slow=self._specs.get("slow"),
            accept_then_drop=self._specs.get("accept_then_drop"),
            injected=dict(self.injected),
        )

    def _fires(self, kind: str, operation: str) -> FaultSpec | None:
        spec = self._specs.get(kind)
        if spec is None or not spec.applies_to(operation):
            return None
        if spec.next > 0:
            spec.next -= 1
            return spec
        if spec.probability > 0 and self._rng.random() < spec.probability:
            return spec
        return None

    async def _hang(self, seconds: float) -> None:
        release = self._release
        try:
            await asyncio.wait_for(release.wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def apply(self, operation: str) -> FaultOutcome:
        outcome = FaultOutcome()
        slow = self._fires("slow", operation)
        if slow is not None:
            outcome.fired.append("slow")
            await asyncio.sleep(slow.delay_ms / 1000.0)
        for kind in ("timeout", "error_5xx", "accept_then_drop"):
            spec = self._fires(kind, operation)
            if spec is None:
                continue
            outcome.fired.append(kind)
            if kind == "timeout":
                await self._hang(spec.hang_s)
                if not spec.process_after:
                    outcome.fail_status = 504
            elif kind == "error_5xx":
                outcome.fail_status = spec.status
            else:
                outcome.drop_after = True
            break
        for kind in outcome.fired:
            self.injected[kind] = self.injected.get(kind, 0) + 1
        return outcome
