"""Failed authentications, counted per client address: slow a guesser down, then stop it for a while.

In memory per process (each replica counts its own; a guesser spread over replicas is still slowed by each).
After `slowdown_after` failures inside the window, every further attempt from that address waits
`min(0.25 s x 2^(extra failures), 4 s)` before its answer; after `block_after`, it gets 429 with Retry-After
until its oldest counted failure leaves the window. A success does not reset the count: guesses interleaved
with a valid key must not escape it.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class FailureThrottle:
    window_s: float = 60.0
    slowdown_after: int = 5
    block_after: int = 30
    max_clients: int = 50_000
    _failures: dict[str, deque[float]] = field(default_factory=dict, init=False, repr=False)

    def _recent(self, client: str, now: float) -> deque[float] | None:
        q = self._failures.get(client)
        if q is None:
            return None
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if not q:
            del self._failures[client]
            return None
        return q

    def blocked_for(self, client: str, now: float | None = None) -> float:
        """Seconds this client must wait before it may try again (0 = not blocked)."""
        now = time.monotonic() if now is None else now
        q = self._recent(client, now)
        if q is None or len(q) < self.block_after:
            return 0.0
        return max(0.0, q[-self.block_after] + self.window_s - now)

    def record_failure(self, client: str, now: float | None = None) -> float:
        """Count a failure; returns how long to delay this answer."""
        now = time.monotonic() if now is None else now
        q = self._recent(client, now)
        if q is None:
            if len(self._failures) >= self.max_clients:  # bounded memory under a spray of addresses
                oldest = next(iter(self._failures))
                del self._failures[oldest]
            q = self._failures[client] = deque()
        q.append(now)
        extra = len(q) - self.slowdown_after
        return 0.0 if extra <= 0 else min(0.25 * 2 ** min(extra - 1, 5), 4.0)
