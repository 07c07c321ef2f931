"""Working-time arithmetic (arrears_shared.working_time): weekly hours, several intervals a day, intervals
across midnight, holidays, DST transitions, a start outside hours, and properties that must hold for any
calendar and instant (checked over a grid of generated cases, against a brute-force minute counter)."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from arrears_shared.working_time import (
    ALWAYS_OPEN,
    WEEKDAYS,
    Holiday,
    Interval,
    NoWorkingTime,
    TeamCalendar,
    add_working_time,
    closed_period_start,
    is_open,
    next_opening,
    working_time_between,
)
from pydantic import ValidationError

NY = ZoneInfo("America/New_York")
H = timedelta(hours=1)


def iv(a: str, b: str) -> Interval:
    return Interval(start=time.fromisoformat(a), end=time.fromisoformat(b))


def cal(
    tz: str = "America/New_York",
    days: str = "mon tue wed thu fri",
    spans: tuple[str, ...] = ("09:00-17:00",),
    holidays: tuple[date, ...] = (),
) -> TeamCalendar:
    intervals = [iv(*s.split("-")) for s in spans]
    return TeamCalendar(
        timezone=tz,
        hours={d: intervals for d in days.split()},  # type: ignore[misc]
        holidays=[Holiday(date=d) for d in holidays],
    )


def ny(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=NY)


NINE_TO_FIVE = cal()

# -- the examples of the issue ---------------------------------------------------------------------------


def test_friday_at_five_with_a_four_hour_sla_is_due_monday_at_one() -> None:
    # Friday 17:00 is closing time: nothing of the SLA runs on Friday; Monday 09:00 + 4 h = 13:00.
    # (The "Monday at 12:00" is the task created an hour earlier, Friday 16:00: 1 h + 3 h.)
    assert add_working_time(ny(2026, 12, 4, 17), 4 * H, NINE_TO_FIVE) == ny(2026, 12, 7, 13)
    assert add_working_time(ny(2026, 12, 4, 16), 4 * H, NINE_TO_FIVE) == ny(2026, 12, 7, 12)


def test_a_start_outside_hours_waits_for_the_opening() -> None:
    assert add_working_time(ny(2026, 12, 5, 11), 30 * timedelta(minutes=1), NINE_TO_FIVE) == ny(
        2026, 12, 7, 9, 30
    )
    assert add_working_time(ny(2026, 12, 7, 6), 8 * H, NINE_TO_FIVE) == ny(2026, 12, 7, 17)
    assert add_working_time(ny(2026, 12, 7, 6), 8 * H + timedelta(minutes=1), NINE_TO_FIVE) == ny(
        2026, 12, 8, 9, 1
    )


def test_zero_is_the_start_itself_and_negative_is_refused() -> None:
    assert add_working_time(ny(2026, 12, 5, 11), timedelta(0), NINE_TO_FIVE) == ny(2026, 12, 5, 11)
    with pytest.raises(ValueError):
        add_working_time(ny(2026, 12, 5, 11), -H, NINE_TO_FIVE)
    with pytest.raises(ValueError):
        add_working_time(datetime(2026, 12, 5, 11), H, NINE_TO_FIVE)  # naive: refused


def test_several_intervals_a_day() -> None:
    lunch = cal(spans=("09:00-12:00", "13:00-17:00"))
    assert add_working_time(ny(2026, 12, 7, 11), 2 * H, lunch) == ny(2026, 12, 7, 14)
    assert working_time_between(ny(2026, 12, 7, 8), ny(2026, 12, 7, 18), lunch) == 7 * H
    assert not is_open(ny(2026, 12, 7, 12, 30), lunch)
    assert next_opening(ny(2026, 12, 7, 12, 30), lunch) == ny(2026, 12, 7, 13)


def test_intervals_across_midnight_belong_to_the_day_they_start() -> None:
    night = cal(days="mon tue wed thu fri", spans=("22:00-06:00",))
    # Friday night runs into Saturday; Saturday night does not exist (no Saturday hours)
    assert is_open(ny(2026, 12, 5, 3), night)  # Saturday 03:00, Friday's shift
    assert not is_open(ny(2026, 12, 5, 23), night)
    assert add_working_time(ny(2026, 12, 5, 5), 2 * H, night) == ny(2026, 12, 7, 23)
    assert working_time_between(ny(2026, 12, 4, 0), ny(2026, 12, 8, 0), night) == 6 * H + 8 * H + 2 * H


def test_whole_days_and_always_open() -> None:
    assert add_working_time(ny(2026, 12, 5, 11), 50 * H, ALWAYS_OPEN) == ny(2026, 12, 5, 11) + 50 * H
    assert is_open(ny(2026, 12, 25, 3), ALWAYS_OPEN)


def test_holidays_close_the_day_and_a_named_holiday_is_kept() -> None:
    xmas = cal(holidays=(date(2026, 12, 25),))
    # Thursday 24th 16:00 + 2 h: 1 h on Thursday, Friday 25th closed, Monday 28th 10:00
    assert add_working_time(ny(2026, 12, 24, 16), 2 * H, xmas) == ny(2026, 12, 28, 10)
    assert working_time_between(ny(2026, 12, 24, 0), ny(2026, 12, 29, 0), xmas) == 16 * H
    named = TeamCalendar(
        timezone="Europe/Madrid",
        hours={"mon": [iv("09:00", "14:00")]},
        holidays=[Holiday(date=date(2026, 12, 7), name="Puente")],
    )
    assert named.holidays[0].name == "Puente"
    assert next_opening(datetime(2026, 12, 7, 10, tzinfo=UTC), named) == datetime(2026, 12, 14, 8, tzinfo=UTC)


def test_a_holiday_does_not_cut_the_night_shift_that_began_the_day_before() -> None:
    night = cal(days="thu", spans=("22:00-06:00",), holidays=(date(2026, 12, 25),))
    assert is_open(ny(2026, 12, 25, 5), night)  # Thursday 24th's shift, into the holiday


def test_dst_spring_forward_day_is_an_hour_shorter_for_a_shift_across_it() -> None:
    night = cal(days="sat", spans=("22:00-06:00",))
    # 2026-03-08 02:00 EST -> 03:00 EDT: Saturday 7th 22:00 to Sunday 06:00 is 7 real hours
    assert working_time_between(ny(2026, 3, 7, 12), ny(2026, 3, 8, 12), night) == 7 * H
    assert add_working_time(ny(2026, 3, 7, 22), 7 * H, night) == ny(2026, 3, 8, 6)


def test_dst_fall_back_day_is_an_hour_longer_for_a_shift_across_it() -> None:
    night = cal(days="sat", spans=("22:00-06:00",))
    # 2026-11-01 02:00 EDT -> 01:00 EST
    assert working_time_between(ny(2026, 10, 31, 12), ny(2026, 11, 1, 12), night) == 9 * H
    day = cal(days="sun", spans=("09:00-17:00",))
    assert working_time_between(ny(2026, 11, 1, 0), ny(2026, 11, 2, 0), day) == 8 * H  # day hours unchanged


def test_a_start_in_the_spring_forward_gap_reads_as_the_offset_before() -> None:
    early = cal(days="sun", spans=("02:30-04:00",))  # 02:30 does not exist on 2026-03-08 in New York
    begins = next_opening(ny(2026, 3, 8, 0), early)
    assert begins == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)  # 02:30 EST = 03:30 EDT
    assert working_time_between(ny(2026, 3, 8, 0), ny(2026, 3, 8, 12), early) == timedelta(minutes=30)


def test_between_is_signed_and_zero_for_an_empty_range() -> None:
    a, b = ny(2026, 12, 7, 10), ny(2026, 12, 8, 11)
    assert working_time_between(a, b, NINE_TO_FIVE) == 9 * H
    assert working_time_between(b, a, NINE_TO_FIVE) == -9 * H
    assert working_time_between(a, a, NINE_TO_FIVE) == timedelta(0)


def test_closed_period_start_names_one_closed_period() -> None:
    fri_close = ny(2026, 12, 4, 17)
    for at in (ny(2026, 12, 4, 18), ny(2026, 12, 5, 12), ny(2026, 12, 7, 8, 59)):
        assert closed_period_start(at, NINE_TO_FIVE) == fri_close
    assert closed_period_start(ny(2026, 12, 7, 18), NINE_TO_FIVE) == ny(2026, 12, 7, 17)


def test_invalid_calendars_are_refused() -> None:
    with pytest.raises(ValidationError, match="IANA"):
        TeamCalendar(timezone="Mars/Olympus", hours={"mon": [iv("09:00", "17:00")]})
    with pytest.raises(ValidationError, match="at least one weekday"):
        TeamCalendar(timezone="UTC", hours={"mon": []})
    with pytest.raises(ValidationError):
        TeamCalendar.model_validate(
            {"timezone": "UTC", "hours": {"funday": [{"start": "09:00", "end": "10:00"}]}}
        )


def test_a_calendar_without_any_working_time_ahead_raises_instead_of_looping() -> None:
    # every Monday is a holiday for the next 3+ years: no working time within the horizon
    mondays = tuple(date(2026, 12, 7) + timedelta(weeks=w) for w in range(0, 170))
    never = cal(days="mon", holidays=mondays)
    with pytest.raises(NoWorkingTime):
        add_working_time(ny(2026, 12, 5), H, never)


# -- properties, over generated calendars and instants, against a minute-by-minute count -------------------

ZONES = ("America/New_York", "Europe/London", "Asia/Kolkata", "Australia/Lord_Howe", "UTC")
SPAN_CHOICES = (
    ("09:00-17:00",),
    ("08:30-12:00", "13:00-18:15"),
    ("22:00-06:00",),
    ("00:00-00:00",),
    ("07:00-11:00", "10:00-14:00"),
)


def brute_minutes(a: datetime, b: datetime, c: TeamCalendar) -> int:
    """Minutes in [a, b) at which the team is open, found by asking `is_open` minute by minute."""
    n, t = 0, a
    while t < b:
        n += is_open(t, c)
        t += timedelta(minutes=1)
    return n


def generated(seed: int) -> tuple[TeamCalendar, datetime]:
    rnd = random.Random(seed)
    days = " ".join(sorted(rnd.sample(WEEKDAYS, rnd.randint(1, 7)), key=WEEKDAYS.index))
    holidays = tuple(date(2026, 3, 1) + timedelta(days=rnd.randint(0, 20)) for _ in range(rnd.randint(0, 3)))
    c = cal(tz=rnd.choice(ZONES), days=days, spans=rnd.choice(SPAN_CHOICES), holidays=holidays)
    # around the northern (March) and Lord Howe (April) transitions, on whole minutes
    start = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(minutes=rnd.randint(0, 45 * 24 * 60))
    return c, start


@pytest.mark.parametrize("seed", range(40))
def test_add_then_between_round_trips_and_lands_in_hours(seed: int) -> None:
    c, start = generated(seed)
    rnd = random.Random(seed * 7 + 1)
    d = timedelta(minutes=rnd.randint(1, 3 * 24 * 60))
    due = add_working_time(start, d, c)
    assert due > start
    assert working_time_between(start, due, c) == d
    # the last minute before `due` is working time (the due instant is never moved into a closed period)
    assert is_open(due - timedelta(minutes=1), c)
    # monotone: more working time never ends earlier
    assert add_working_time(start, d + timedelta(minutes=1), c) > due


@pytest.mark.parametrize("seed", range(12))
def test_between_matches_a_minute_by_minute_count(seed: int) -> None:
    c, start = generated(1000 + seed)
    end = start + timedelta(hours=random.Random(seed).randint(1, 60))
    assert working_time_between(start, end, c) == timedelta(minutes=brute_minutes(start, end, c))


@pytest.mark.parametrize("seed", range(20))
def test_next_opening_is_open_and_nothing_before_it_is(seed: int) -> None:
    c, at = generated(2000 + seed)
    opens = next_opening(at, c)
    assert opens >= at and is_open(opens, c)
    assert working_time_between(at, opens, c) == timedelta(0)
    if opens > at:
        assert closed_period_start(at, c) <= at


def test_additivity_over_a_split_point() -> None:
    for seed, split in itertools.product(range(10), (37, 600, 1900)):
        c, start = generated(3000 + seed)
        mid, end = start + timedelta(minutes=split), start + timedelta(days=4)
        assert working_time_between(start, end, c) == working_time_between(
            start, mid, c
        ) + working_time_between(mid, end, c)
