"""`IsoDate`: a day an API takes as `YYYY-MM-DD` and nothing else, between 1900-01-01 and 2999-12-31.

Pydantic's `date` also takes a number, or a string of digits, as a Unix timestamp: `as_of=20240101` would be
read as 1970-08-23 and answered without a word. And the extreme days break what is done with them: asyncpg
sends `date.min` / `date.max` as PostgreSQL's -infinity / infinity ("cannot subtract infinite dates"), and
a week before 0001-01-01 does not exist (OverflowError). Query parameters and bodies that name a day use
`IsoDate` (documented the same way: `type: string, format: date`); a `date` object passed in code is
checked the same way.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BeforeValidator

FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2999, 12, 31)
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def parse_day(value: Any) -> date:
    if isinstance(value, str) and _DAY.fullmatch(value):
        day = date.fromisoformat(value)  # ValueError for a day that does not exist (2026-02-30)
    elif isinstance(value, date) and not isinstance(value, datetime):
        day = value
    else:
        raise ValueError("a day is written YYYY-MM-DD")
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ValueError(f"a day between {FIRST_DAY} and {LAST_DAY}")
    return day


IsoDate = Annotated[date, BeforeValidator(parse_day)]
