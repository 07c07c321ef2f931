"""Client-side cap on Sheets write requests: at most `limit` in any `window_s` seconds (a sliding window).

Google's quota is a number of write requests per minute per user, not a minimum spacing between them: a
flush of a few requests may go out at once, and only the request that would be the `limit + 1`-th within a
minute waits until the oldest of them is a minute old. (Spacing every request 60/limit seconds apart, as
this replaced, made a five-request flush of a 100k-row first run sleep ~5 s for no quota reason.)
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class WriteWindow:
    def __init__(
        self,
        limit: int,
        window_s: float = 60.0,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.sleep = sleep
        self.clock = clock
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until one more request keeps the window within its limit, and count it (thread-safe)."""
        with self._lock:
            while len(self._sent) >= self.limit:
                wait = self._sent[0] + self.window_s - self.clock()
                if wait > 0:
                    self.sleep(wait)
                else:
                    self._sent.popleft()
            self._sent.append(self.clock())
