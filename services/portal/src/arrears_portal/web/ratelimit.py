"""Per client address request limit for the public pages: a sliding one-minute window, in memory per replica
(N replicas allow N times the rate; the ingress may add its own limit in front)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from prometheus_client import Counter

LIMITED = Counter("arrears_portal_rate_limited_total", "Portal requests refused by the per-address limit")


@dataclass
class AddressLimiter:
    per_minute: int
    max_clients: int = 50_000
    _hits: dict[str, deque[float]] = field(default_factory=dict, init=False, repr=False)

    def allow(self, client: str, now: float | None = None) -> float:
        """0 when the request may go on, else the seconds to wait."""
        now = time.monotonic() if now is None else now
        q = self._hits.get(client)
        if q is None:
            if len(self._hits) >= self.max_clients:
                del self._hits[next(iter(self._hits))]
            q = self._hits[client] = deque()
        while q and q[0] <= now - 60.0:
            q.popleft()
        if len(q) >= self.per_minute:
            LIMITED.inc()
            return q[0] + 60.0 - now
        q.append(now)
        return 0.0
