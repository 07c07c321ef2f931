"""Per-minute read/write quotas, per project and per user, as the Sheets API meters them.

A sliding window of request timestamps per (kind, scope): a request is admitted when fewer than the limit
were admitted in the last ``window_s`` seconds. Rejected requests are not counted (a client that backs off
recovers as soon as the window slides). Not thread-safe: the app calls it from the event loop only.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from .errors import SheetsApiError
from .models import QuotaLimits

Kind = Literal["read", "write"]

_METRIC = {"read": ("Read requests", "read_requests"), "write": ("Write requests", "write_requests")}


class QuotaMeter:
    def __init__(
        self, limits: QuotaLimits, project_number: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self.project_number = project_number
        self._clock = clock
        self._log: dict[tuple[str, str], deque[float]] = {}

    def set_limits(self, limits: QuotaLimits) -> None:
        self.limits = limits

    def reset(self) -> None:
        self._log.clear()

    def _limit(self, kind: Kind, scope: str) -> int | None:
        lim = self.limits
        if kind == "read":
            return (
                lim.read_requests_per_minute_per_project
                if scope == "project"
                else lim.read_requests_per_minute_per_user
            )
        return (
            lim.write_requests_per_minute_per_project
            if scope == "project"
            else lim.write_requests_per_minute_per_user
        )

    def admit(self, kind: Kind, user: str) -> None:
        """Count one request or raise :class:`SheetsApiError` 429 with Google's RESOURCE_EXHAUSTED body."""
        if self.limits.lifted:
            return
        now = self._clock()
        horizon = now - self.limits.window_s
        checks: list[tuple[str, deque[float], int | None]] = []
        for scope, key in (("user", f"user:{user}"), ("project", "project")):
            log = self._log.setdefault((kind, key), deque())
            while log and log[0] <= horizon:
                log.popleft()
            checks.append((scope, log, self._limit(kind, scope)))
        for scope, log, limit in checks:
            if limit is not None and len(log) >= limit:
                raise self._exhausted(kind, scope, log, now)
        for _, log, _ in checks:
            log.append(now)

    def _exhausted(self, kind: Kind, scope: str, log: deque[float], now: float) -> SheetsApiError:
        title, metric = _METRIC[kind]
        per = "per minute per user" if scope == "user" else "per minute"
        limit_title = f"{title} {per}"
        limit_name = f"{title.replace(' ', '')}PerMinute{'PerUser' if scope == 'user' else ''}"
        message = (
            f"Quota exceeded for quota metric '{title}' and limit '{limit_title}' of service "
            f"'sheets.googleapis.com' for consumer 'project_number:{self.project_number}'."
        )
        details = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "RATE_LIMIT_EXCEEDED",
                "domain": "googleapis.com",
                "metadata": {
                    "quota_metric": f"sheets.googleapis.com/{metric}",
                    "quota_limit": limit_name,
                    "quota_location": "global",
                    "service": "sheets.googleapis.com",
                    "consumer": f"projects/{self.project_number}",
                },
            }
        ]
        headers: dict[str, str] = {}
        if self.limits.send_retry_after:
            wait = (log[0] + self.limits.window_s - now) if log else self.limits.window_s
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return SheetsApiError(429, message, details=details, headers=headers)
