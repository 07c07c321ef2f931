"""Instalment days of a payment plan, counted one way everywhere: the portal's schedule, the segmenter's hold
and escalation's promise tracking must agree on every date. Monthly instalments fall on the same day of the
month, or the month's last day when it has no such day (31 Jan -> 28 Feb -> 31 Mar)."""

from __future__ import annotations

import calendar
from datetime import date, timedelta

DAYS = {"week": 7, "fortnight": 14}


def add_months(day: date, months: int) -> date:
    """The same day `months` later, or that month's last day when it has no such day."""
    y, m = divmod(day.month - 1 + months, 12)
    year, month = day.year + y, m + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def instalment_day(first: date, every: str, index: int) -> date:
    """The day of instalment `index` (0: the first) of a plan starting on `first`, every week / fortnight /
    month."""
    if every == "month":
        return add_months(first, index)
    return first + timedelta(days=DAYS[every] * index)


def due_dates(first: date, every: str, count: int) -> list[date]:
    """The days of all `count` instalments."""
    return [instalment_day(first, every, i) for i in range(count)]
