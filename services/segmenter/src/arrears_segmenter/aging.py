"""Days past due and aging bucket, computed on the debtor's local calendar."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from arrears_shared.events import AgingBucket

DEFAULT_BOUNDARIES: tuple[int, int, int, int] = (30, 60, 90, 120)
_BUCKETS = (AgingBucket.D1_30, AgingBucket.D31_60, AgingBucket.D61_90, AgingBucket.D91_120)


def zone_of(name: str | None) -> tuple[ZoneInfo, bool]:
    """The debtor's zone and whether it is known; an unknown or invalid zone falls back to UTC (flagged)."""
    if name:
        try:
            return ZoneInfo(name), True
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC"), False


def local_date(now: datetime, tz: str | None) -> date:
    return now.astimezone(zone_of(tz)[0]).date()


def days_past_due(due_date: date, now: datetime, tz: str | None) -> int:
    return max(0, (local_date(now, tz) - due_date).days)


def aging_bucket(dpd: int, boundaries: Sequence[int] = DEFAULT_BOUNDARIES) -> AgingBucket:
    if dpd <= 0:
        return AgingBucket.CURRENT
    for bound, bucket in zip(boundaries, _BUCKETS, strict=True):
        if dpd <= bound:
            return bucket
    return AgingBucket.D120_PLUS


def parse_boundaries(raw: str) -> tuple[int, int, int, int]:
    parts = tuple(int(p) for p in raw.split(",") if p.strip())
    if len(parts) != 4 or list(parts) != sorted(set(parts)) or parts[0] < 1:
        raise ValueError("aging boundaries must be four increasing day counts, e.g. 30,60,90,120")
    return parts  # type: ignore[return-value]


def local_midnight(d: date, tz: str | None) -> datetime:
    """UTC instant of the start of local day `d` (DST-safe)."""
    return datetime.combine(d, time(0, 0), tzinfo=zone_of(tz)[0]).astimezone(UTC)


def moment_dpd_reaches(due_date: date, days: int, tz: str | None) -> datetime:
    """First instant at which days_past_due >= `days`."""
    return local_midnight(due_date + timedelta(days=days), tz)
