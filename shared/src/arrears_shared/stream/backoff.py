"""Retry delays: exponential backoff with "equal jitter", the one formula every retry loop uses (the stream
runner's record retries and infrastructure waits, the delivery engine's provider retries)."""

from __future__ import annotations

import random


def backoff(attempt: int, base_s: float, max_s: float) -> float:
    """Seconds to wait before retry number `attempt` (1 = the first retry): the delay doubles from `base_s`
    per attempt up to `max_s`; half of it is fixed, the other half random, so retries spread out but never
    come much sooner than planned."""
    base = min(max_s, base_s * 2 ** max(0, attempt - 1))
    return base / 2 + random.random() * base / 2
