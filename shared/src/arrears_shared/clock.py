"""One injectable source of "now" for handlers, loops and views."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class Clock:
    """Wall clock plus an offset; tests pin it with `set()` / `advance()`."""

    def __init__(self, offset_s: float = 0.0, fixed: datetime | None = None) -> None:
        self._offset = timedelta(seconds=offset_s)
        self._fixed = fixed

    def now(self) -> datetime:
        if self._fixed is not None:
            return self._fixed
        return datetime.now(UTC) + self._offset

    def set(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("clock time must be timezone-aware")
        self._fixed = at.astimezone(UTC)

    def advance(self, by: timedelta) -> None:
        if self._fixed is None:
            self._offset += by
        else:
            self._fixed += by


def local_day(tz: str | None, now: datetime) -> date:
    """The day it is at `now` in the IANA zone `tz` (a debtor's day: promises, plans and offers are kept by
    it); the UTC day when the zone is unknown or invalid. A naive `now` is read as UTC."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    try:
        return now.astimezone(ZoneInfo(tz)).date() if tz else now.astimezone(UTC).date()
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "America" is a directory, not a zone
        return now.astimezone(UTC).date()
