"""Circuit breaker per provider route (one per replica and provider).

`closed` -> (`failure_threshold` consecutive outage failures) -> `open` for `cooldown_s` -> `half_open`: one
trial call at a time; its success closes the circuit, its failure re-opens it. Outage failures are 5xx,
timeouts, connect errors and in-doubt sends; rate limits and rejections of one message are not outages.

While the primary route is open the engine either sends by the channel's fallback route or leaves notices
queued (never dead-lettered for being late).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

from .. import telemetry as m

log = logging.getLogger(__name__)

State = Literal["closed", "open", "half_open"]
_GAUGE_VALUE = {"closed": 0, "half_open": 1, "open": 2}


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        service: str = "",
    ) -> None:
        self.name = name
        self.failure_threshold = max(1, failure_threshold)
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._service = service
        self._failures = 0
        self._opened_at: float | None = None
        self._down_since: float | None = None  # first opening since the last success (outage start)
        self._trial_running = False

    @property
    def state(self) -> State:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a call go out now? In `half_open` only one trial runs at a time (it must report back)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_running:
            self._trial_running = True
            return True
        return False

    @property
    def trial_running(self) -> bool:
        """A half-open trial call is out (the call now failing or succeeding was the trial)."""
        return self._trial_running

    def would_allow(self) -> bool:
        """Like `allow()` without taking the half-open trial slot (for choosing a route)."""
        state = self.state
        return state == "closed" or (state == "half_open" and not self._trial_running)

    def down_for(self) -> float:
        """Seconds since the circuit first opened without a success since (failed half-open trials do not
        restart the count); 0 while it is closed. What channel failover (`failover`) measures."""
        return 0.0 if self._down_since is None else self._clock() - self._down_since

    def success(self) -> None:
        if self._opened_at is not None:
            log.warning("circuit closed", extra={"route": self.name})
        self._failures = 0
        self._opened_at = None
        self._down_since = None
        self._trial_running = False
        self._publish()

    def failure(self) -> None:
        self._failures += 1
        was_trial = self._trial_running
        self._trial_running = False
        if was_trial or (self._opened_at is None and self._failures >= self.failure_threshold):
            self._opened_at = self._clock()
            if self._down_since is None:
                self._down_since = self._opened_at
            log.warning("circuit opened", extra={"route": self.name, "cooldown_s": self.cooldown_s})
        self._publish()

    def release(self) -> None:
        """The call neither succeeded nor failed as an outage (e.g. rate limited): free the trial slot."""
        self._trial_running = False

    def _publish(self) -> None:
        m.CIRCUIT_STATE.labels(self._service, self.name).set(_GAUGE_VALUE[self.state])
