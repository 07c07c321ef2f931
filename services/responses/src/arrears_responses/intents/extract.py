"""Amount and date extraction for promises to pay.

Amounts become integer minor units (two-decimal currencies). Relative dates ("Friday", "next week",
"tomorrow", "the 15th", "12/15", "in 2 weeks") resolve against the day the reply was received.
"""

from __future__ import annotations

import calendar
import re
from datetime import date, timedelta

from .normalize import normalize

_AMOUNT = re.compile(
    r"(?:\$|usd\s?|us\$)\s?(?P<a>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<c>\d{1,2}))?"
    r"|(?P<b>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<d>\d{1,2}))?\s?(?:dollars|dollar|bucks|usd|dlls|dolares)\b"
)

WEEKDAYS = {
    "monday": 0, "mon": 0, "tuesday": 1, "tues": 1, "tue": 1, "wednesday": 2, "wed": 2, "weds": 2,
    "thursday": 3, "thurs": 3, "thur": 3, "thu": 3, "friday": 4, "fri": 4, "saturday": 5, "sunday": 6,
    "lunes": 0, "martes": 1, "miercoles": 2, "jueves": 3, "viernes": 4, "sabado": 5, "domingo": 6,
}  # fmt: skip
MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name} | {
    name.lower(): i for i, name in enumerate(calendar.month_abbr) if name
}
_WEEKDAY = re.compile(r"\b(?P<d>" + "|".join(sorted(WEEKDAYS, key=len, reverse=True)) + r")\b")
_MONTH_DAY = re.compile(
    r"\b(?P<m>" + "|".join(sorted(MONTHS, key=len, reverse=True)) + r")\.? (?P<d>\d{1,2})(?:st|nd|rd|th)?\b"
)
_DAY_MONTH = re.compile(
    r"\b(?P<d>\d{1,2})(?:st|nd|rd|th)? (?:of )?(?P<m>"
    + "|".join(sorted(MONTHS, key=len, reverse=True))
    + r")\b"
)
_NUMERIC = re.compile(r"(?<![\d$.,])(?P<m>\d{1,2})/(?P<d>\d{1,2})(?:/(?P<y>\d{2,4}))?(?![\d])")
_ORDINAL = re.compile(r"\b(?:on |by )?the (?P<d>\d{1,2})(?:st|nd|rd|th)\b|\bel (?P<e>\d{1,2})\b")
_IN_N = re.compile(r"\bin (?P<n>\d{1,2}|a|one|two|three) (?P<u>days?|weeks?)\b")
_WORD_NUM = {"a": 1, "one": 1, "two": 2, "three": 3}


def extract_amount_minor(text: str) -> int | None:
    m = _AMOUNT.search(normalize(text))
    if not m:
        return None
    whole = (m.group("a") or m.group("b")).replace(",", "")
    cents = m.group("c") or m.group("d") or "0"
    minor = int(whole) * 100 + int(cents.ljust(2, "0"))
    return minor if minor > 0 else None


def _next_date(today: date, month: int, day: int, year: int | None = None) -> date | None:
    try:
        if year is not None:
            return date(year, month, day)
        d = date(today.year, month, day)
        return d if d >= today else date(today.year + 1, month, day)
    except ValueError:
        return None


def extract_date(text: str, today: date) -> date | None:
    t = normalize(text)
    if re.search(r"\b(?:today|tonight|hoy)\b", t):
        return today
    if re.search(r"\b(?:tomorrow|tmrw|tmr|tomorow|manana)\b", t):
        return today + timedelta(days=1)
    if m := _IN_N.search(t):
        n = _WORD_NUM.get(m.group("n")) or int(m.group("n"))
        return today + timedelta(days=n * (7 if m.group("u").startswith("week") else 1))
    if m := _MONTH_DAY.search(t) or _DAY_MONTH.search(t):
        return _next_date(today, MONTHS[m.group("m")], int(m.group("d")))
    if m := _NUMERIC.search(t):
        y = m.group("y")
        year = None if y is None else (int(y) + 2000 if len(y) == 2 else int(y))
        month, day = int(m.group("m")), int(m.group("d"))
        if month > 12 >= day:  # "15/12": day first (most of the world writes it so)
            month, day = day, month
        return _next_date(today, month, day, year)
    if m := _WEEKDAY.search(t):
        target = WEEKDAYS[m.group("d")]
        # the coming one; said on that very weekday it means a week later ("today" is handled above)
        ahead = (target - today.weekday()) % 7 or 7
        return today + timedelta(days=ahead)
    if m := _ORDINAL.search(t):
        day = int(m.group("d") or m.group("e"))
        month, year = today.month, today.year
        if day < today.day:
            month, year = (1, year + 1) if month == 12 else (month + 1, year)
        try:
            return date(year, month, day)
        except ValueError:
            return None
    if re.search(r"\bend of (?:the |this )?month\b", t):
        return date(today.year, today.month, calendar.monthrange(today.year, today.month)[1])
    if re.search(r"\bnext week\b", t):
        return today + timedelta(days=7 - today.weekday())  # Monday of next week
    if re.search(r"\bnext month\b", t):
        return date(today.year + (today.month == 12), today.month % 12 + 1, 1)
    if re.search(r"\b(?:payday|pay day)\b", t):
        return None
    return None
