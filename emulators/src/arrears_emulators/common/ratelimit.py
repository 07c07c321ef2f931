"""Per-key rate limiting for emulators (token bucket or sliding window), changeable at runtime.

Costs are in the provider's units: 1 per request for QUO, Gmail quota units (100 per send) for Gmail.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Literal

from pydantic import BaseModel, Field


class LimitsConfig(BaseModel):
    enabled: bool = True
    rate: float = Field(10.0, gt=0, description="units per second")
    burst: float | None = Field(None, gt=0, description="token bucket capacity (default rate * window_s)")
    window_s: float = Field(1.0, gt=0, description="sliding window length")
    algorithm: Literal["token_bucket", "sliding_window"] = "token_bucket"
    daily_limit: int | None = Field(
        None, ge=0, description="per-key sends per rolling 24 hours (emulators that model one)"
    )

    @property
    def capacity(self) -> float:
        return self.burst if self.burst is not None else self.rate * self.window_s


class LimitsUpdate(BaseModel):
    """Body of ``PUT /_emulator/limits``; only the fields given change. ``{"enabled": false}`` lifts limits."""

    enabled: bool | None = None
    rate: float | None = Field(None, gt=0)
    burst: float | None = Field(None, gt=0)
    window_s: float | None = Field(None, gt=0)
    algorithm: Literal["token_bucket", "sliding_window"] | None = None
    daily_limit: int | None = Field(None, ge=0)
    lift_daily_limit: bool = False


def retry_after_header(seconds: float) -> str:
    """HTTP ``Retry-After`` is whole seconds; never advertise 0 for a refusal."""
    return str(max(1, math.ceil(seconds)))


class RateLimiter:
    def __init__(self, config: LimitsConfig) -> None:
        self.config = config
        self._tokens: dict[str, tuple[float, float]] = {}
        self._windows: dict[str, deque[tuple[float, float]]] = {}

    def update(self, update: LimitsUpdate) -> LimitsConfig:
        changes = update.model_dump(exclude_none=True, exclude={"lift_daily_limit"})
        config = self.config.model_copy(update=changes)
        if update.lift_daily_limit:
            config = config.model_copy(update={"daily_limit": None})
        self.config = LimitsConfig.model_validate(config.model_dump())
        self.reset_state()
        return self.config

    def replace(self, config: LimitsConfig) -> None:
        self.config = config.model_copy()
        self.reset_state()

    def reset_state(self) -> None:
        self._tokens.clear()
        self._windows.clear()

    def acquire(self, key: str, cost: float = 1.0, now: float | None = None) -> float | None:
        """Take `cost` units for `key`. Returns None if allowed, else seconds until it would be allowed."""
        cfg = self.config
        if not cfg.enabled:
            return None
        t = time.monotonic() if now is None else now
        if cfg.algorithm == "token_bucket":
            return self._bucket(key, cost, t)
        return self._window(key, cost, t)

    def _bucket(self, key: str, cost: float, now: float) -> float | None:
        cfg = self.config
        capacity = max(cfg.capacity, cost)
        tokens, last = self._tokens.get(key, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * cfg.rate)
        if tokens >= cost:
            self._tokens[key] = (tokens - cost, now)
            return None
        self._tokens[key] = (tokens, now)
        return (cost - tokens) / cfg.rate

    def _window(self, key: str, cost: float, now: float) -> float | None:
        cfg = self.config
        limit = max(cfg.rate * cfg.window_s, cost)
        events = self._windows.setdefault(key, deque())
        while events and events[0][0] <= now - cfg.window_s:
            events.popleft()
        used = sum(c for _, c in events)
        if used + cost <= limit:
            events.append((now, cost))
            return None
        freed = 0.0
        for at, c in events:
            freed += c
            if used - freed + cost <= limit:
                return max(0.0, at + cfg.window_s - now)
        return cfg.window_s
