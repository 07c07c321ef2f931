"""Working time: a team's calendar (IANA time zone, weekly hours, holidays) and pure arithmetic over it.

Escalation counts task and case SLAs in working time with it; responses decides whether a reply arrived
while the owning team was closed and when it opens next. No I/O, no clock: every function takes the time.

Semantics (the tests in `tests/escalation/test_business_hours.py` pin each one):

- Hours are per weekday, any number of intervals `start`–`end` in the team's local time. An interval whose
  `end` is not after its `start` runs past midnight into the next day (`22:00`–`06:00`); `00:00`–`00:00` is
  the whole day. An interval belongs to the day it *starts* on: a holiday closes the intervals starting on
  that date (a night shift that began the evening before still ends normally).
- Local times become instants with `zoneinfo` (PEP 495): on a spring-forward day a start inside the gap is
  read with the offset before the gap (02:30 = 03:30 summer time), on a fall-back day an ambiguous time is its
  first occurrence. Working time is then measured in real elapsed time between instants, so a night shift
  across the fall-back change is one hour longer, and across spring-forward one hour shorter.
- Overlapping intervals count once.
- `add_working_time(start, d)`: the instant at which `d` of working time has passed since `start`; a start
  outside hours waits for the next opening; `d == 0` is `start` itself.
- `working_time_between(a, b)`: working time in `[a, b)`; negative when `b < a`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# The longest gap searched for working time: a calendar whose next opening is further away than this (say,
# every day a holiday) is refused rather than looped over forever.
HORIZON_DAYS = 3 * 366


class NoWorkingTime(ValueError):
    """The calendar has no working time within `HORIZON_DAYS` of the instant asked about."""


class Interval(BaseModel):
    """Working hours on one weekday, local time; `end <= start` runs past midnight."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: time
    end: time

    @field_validator("start", "end")
    @classmethod
    def _naive_minutes(cls, v: time) -> time:
        if v.tzinfo is not None:
            raise ValueError("local time of day without a zone")
        return v.replace(second=0, microsecond=0)

    def span(self, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """The interval starting on `day` as UTC instants."""
        end_day = day if self.end > self.start else day + timedelta(days=1)
        begin = datetime.combine(day, self.start, zone).astimezone(UTC)
        finish = datetime.combine(end_day, self.end, zone).astimezone(UTC)
        return begin, finish

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


class Holiday(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    date: date
    name: str = Field("", max_length=100)


class TeamCalendar(BaseModel):
    """A team's working calendar. The default (no hours at all) is not valid: use `ALWAYS_OPEN` for 24/7."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    timezone: str = Field(description="IANA time zone of the team, e.g. America/New_York")
    hours: dict[Weekday, list[Interval]] = Field(
        description="Working intervals per weekday (local time); a missing weekday is closed"
    )
    holidays: list[Holiday] = Field(
        default_factory=list, description="Closed dates (local), optionally named"
    )

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown IANA time zone {v!r}") from e
        return v

    @model_validator(mode="after")
    def _some_hours(self) -> TeamCalendar:
        if not any(self.hours.values()):
            raise ValueError("a calendar needs working hours on at least one weekday")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def holiday_dates(self) -> frozenset[date]:
        return frozenset(h.date for h in self.holidays)


ALWAYS_OPEN = TeamCalendar(
    timezone="UTC", hours={d: [Interval(start=time(0), end=time(0))] for d in WEEKDAYS}
)


def _spans_from(
    cal: TeamCalendar, at: datetime, days: int = HORIZON_DAYS
) -> Iterator[tuple[datetime, datetime]]:
    """Working spans (UTC, merged, in order) that end after `at`, for up to `days` days."""
    zone, closed = cal.zone, cal.holiday_dates()
    day = at.astimezone(zone).date() - timedelta(days=1)  # yesterday's night shift may still run
    pending: tuple[datetime, datetime] | None = None
    for _ in range(days + 2):
        todays = sorted(
            iv.span(day, zone) for iv in ([] if day in closed else cal.hours.get(WEEKDAYS[day.weekday()], []))
        )
        for begin, finish in todays:
            if finish <= begin:  # a zero-length interval (e.g. 02:00-03:00 lost to spring-forward)
                continue
            if pending is None:
                pending = (begin, finish)
            elif begin <= pending[1]:
                pending = (pending[0], max(pending[1], finish))
            else:
                if pending[1] > at:
                    yield pending
                pending = (begin, finish)
        # spans starting on a later day begin after every span that started today, but may overlap
        # one that runs past midnight: keep the last one pending until the next day is seen
        day += timedelta(days=1)
    if pending is not None and pending[1] > at:
        yield pending


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("working-time arithmetic needs timezone-aware datetimes")
    return at.astimezone(UTC)


def add_working_time(start: datetime, duration: timedelta, cal: TeamCalendar) -> datetime:
    """The instant at which `duration` of working time has passed since `start` (UTC)."""
    start = _aware(start)
    if duration < timedelta(0):
        raise ValueError("duration must not be negative")
    if duration == timedelta(0):
        return start
    left = duration
    for begin, finish in _spans_from(cal, start):
        begin = max(begin, start)
        if left <= finish - begin:
            return begin + left
        left -= finish - begin
    raise NoWorkingTime(f"less than {duration} of working time within {HORIZON_DAYS} days of {start}")


def working_time_between(a: datetime, b: datetime, cal: TeamCalendar) -> timedelta:
    """Working time in `[a, b)`; negative when `b` is before `a`."""
    a, b = _aware(a), _aware(b)
    if b < a:
        return -working_time_between(b, a, cal)
    total = timedelta(0)
    days = (b - a).days + 2
    for begin, finish in _spans_from(cal, a, days):
        if begin >= b:
            break
        total += min(finish, b) - max(begin, a)
    return total


def is_open(at: datetime, cal: TeamCalendar) -> bool:
    at = _aware(at)
    for begin, _ in _spans_from(cal, at, 2):
        return begin <= at
    return False


def next_opening(at: datetime, cal: TeamCalendar) -> datetime:
    """`at` itself while open, else the start of the next working span (UTC)."""
    at = _aware(at)
    for begin, _ in _spans_from(cal, at):
        return max(begin, at)
    raise NoWorkingTime(f"no working time within {HORIZON_DAYS} days of {at}")


def closed_period_start(at: datetime, cal: TeamCalendar) -> datetime:
    """When the closed period containing `at` began: the end of the last working span before it (UTC); the
    same for every instant of one closed period, so it names the period. `at` must be outside hours."""
    at = _aware(at)
    for back in (14, 366):  # most calendars open every week: look at two weeks before a whole year
        last: datetime | None = None
        for begin, finish in _spans_from(cal, at - timedelta(days=back), back + 2):
            if begin > at:
                break
            if finish <= at:
                last = finish
        if last is not None:
            return last
    raise NoWorkingTime(f"no working time in the year before {at}")
