"""Promise details: amount (integer minor units) and currency, the promised date, and an instalment plan.

Dates resolve against `today`, the day the reply was received **in the debtor's time zone** (see
docs/intents.md, "Promise details", for each rule). The words come from `locales/*.yaml`, so a new language
needs no code. When a reply names several dates, the first one written is the promise."""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from functools import cache

from .lexicon import Lexicon, lexicon
from .normalize import normalize

PERIODS = ("week", "fortnight", "month")


@dataclass(frozen=True, slots=True)
class PromiseDetails:
    amount_minor: int | None = None
    currency: str | None = None
    date: date | None = None
    plan_every: str | None = None  # week | fortnight | month: the amount is an instalment

    @property
    def empty(self) -> bool:
        return self.amount_minor is None and self.date is None and self.plan_every is None


def _alt(words: Iterable[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


_NOT_MONEY_BEFORE = {"at", "by", "around", "after", "before", "until", "till", "til", "las", "la", "antes", "despues",
                     "room", "apt", "unit", "ext", "#", "no", "number", "numero"}  # fmt: skip
# US thousands (1,250.50), European thousands (1.500,00), a decimal comma (12,50), plain (1250, 12.5)
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d{1,3}(?:\.\d{3})+(?:,\d{1,2})?|\d+,\d{2}(?!\d)|\d+(?:\.\d{1,2})?"
_EU = re.compile(r"\d{1,3}(?:\.\d{3})+(?:,\d{1,2})?|\d+,\d{2}")
# a number that is an identifier, not money: phone numbers, long digit runs, after "account", "zip", "#"…
_PHONE = re.compile(r"\b\d{3}[-. ]\d{3}[-. ]\d{4}\b|\b\d{3}[-. ]\d{4}\b|\(\d{3}\) ?\d{3}[-. ]\d{4}")
_ID_WORDS = {"account", "acct", "acc", "zip", "cell", "phone", "tel", "order", "ref", "reference", "invoice",
             "case", "ticket", "confirmation", "conf", "cuenta", "codigo", "folio", "recibo", "referencia", "celular"}  # fmt: skip


@dataclass(frozen=True)
class _Patterns:
    before: re.Pattern[str]
    after: re.Pattern[str]
    words: re.Pattern[str]
    bare: re.Pattern[str]
    spelled: re.Pattern[str]
    plan: dict[str, re.Pattern[str]]
    dates: tuple[tuple[str, re.Pattern[str]], ...]


@cache
def _patterns(lx: Lexicon) -> _Patterns:
    w = lambda k: _alt(getattr(lx, k))  # noqa: E731
    months, weekdays = _alt(lx.months), _alt(lx.weekdays)
    before = re.compile(rf"(?P<cur>{_alt(lx.money_before)})\s?(?P<n>{_NUM})(?P<k>k\b)?")
    after = re.compile(rf"(?<![\d/.$])(?P<n>{_NUM})(?P<k>k\b)?\s?(?P<cur>{_alt(lx.money_after)})(?![a-z])")
    words = re.compile(
        rf"\b(?P<w>{_alt(lx.numbers)})(?: (?P<h>hundred|cientos?))? (?P<cur>{_alt(lx.money_after)})\b"
    )
    spelled = re.compile(rf"\b(?P<w>\d{{1,2}}|{_alt(lx.numbers)})(?: (?P<h>hundred|cientos?))?\b")
    # a bare number used as money: "can I do 50 a week", "te pago 300 el viernes"
    bare = re.compile(
        rf"(?<![\d/.:#$])\b(?P<n>{_NUM})\b(?!\s?(?:st|nd|rd|th|am|pm|/|de (?:{months})|of (?:{months}))\b)(?!\s?%)(?![/:.]\d)"
    )
    plan = {
        period: re.compile(
            rf"(?<!\bin )(?<!\bwithin )(?<!\ben )(?<![a-z])(?:{_alt(lx.instalments[period])})(?![a-z])"
        )
        for period in PERIODS
        if period in lx.instalments
    }
    dates = (
        ("after_tomorrow", re.compile(rf"\b(?:{w('day_after_tomorrow')})\b")),
        ("iso", re.compile(r"\b(?P<y>20\d\d)-(?P<m>\d{1,2})-(?P<d>\d{1,2})\b")),
        ("numeric", re.compile(r"(?<![\d$.,/-])(?P<a>\d{1,2})[/-](?P<b>\d{1,2})(?:[/-](?P<y>\d{2,4}))?(?![\d%/-])(?! (?:of|de|del)\b)")),
        ("month_day", re.compile(rf"\b(?P<m>{months})\.? (?P<d>\d{{1,2}})(?:st|nd|rd|th)?\b(?!:)")),
        ("day_month", re.compile(rf"\b(?P<d>\d{{1,2}})(?:st|nd|rd|th|ro|ero|do|to|vo)? (?:de |of )?(?P<m>{months})\b")),
        ("in_n", re.compile(rf"\b(?:{w('in_words')}) (?P<n>\d{{1,2}}|an?|{_alt(lx.numbers)}) (?P<u>{w('day_units')}|{w('week_units')})\b")),
        ("end_of_month", re.compile(rf"\b(?:{w('end_of_month')})\b")),
        ("first_of_month", re.compile(rf"\b(?:{w('first_of_month')})\b")),
        ("ordinal", re.compile(rf"\b(?:{w('ordinal_prefixes')}) (?P<d>\d{{1,2}})(?:st|nd|rd|th|ro|vo|to)?\b(?![:.,]?\d)(?! (?:dollars|bucks|dolares|pesos|am|pm)\b)")),
        ("ordinal_bare", re.compile(r"\b(?P<d>\d{1,2})(?:st|nd|rd|th)\b")),
        ("weekday", re.compile(rf"\b(?P<wd>{weekdays})\b")),
        ("today", re.compile(rf"\b(?:{w('today')})\b")),
        ("tomorrow", re.compile(rf"(?<!la )(?<!las )\b(?:{w('tomorrow')})\b")),
        ("next_week", re.compile(rf"\b(?:{w('next_week')})\b")),
        ("next_month", re.compile(rf"\b(?:{w('next_month')})\b")),
    )  # fmt: skip
    return _Patterns(before, after, words, bare, spelled, plan, dates)


def _minor(number: str, thousands: str | None = None) -> int | None:
    plain = number.replace(".", "").replace(",", ".") if _EU.fullmatch(number) else number.replace(",", "")
    try:
        value = Decimal(plain)
    except InvalidOperation:
        return None
    if thousands:
        value *= 1000
    minor = int(value * 100)
    return minor if minor > 0 else None


def extract_amount(
    text: str, default_currency: str = "USD", *, allow_bare: bool = False
) -> tuple[int, str] | None:
    """The first amount of money named: `$1,250.50` -> (125050, "USD"); `300 pesos` -> (30000, "MXN").
    With `allow_bare`, a bare number ("can I do 50") counts, in `default_currency`."""
    lx = lexicon()
    p = _patterns(lx)
    t = normalize(text)
    found: list[tuple[int, int, str]] = []
    for m in (p.before.search(t), p.after.search(t)):
        if m and (minor := _minor(m.group("n"), m.group("k"))):
            cur = (
                lx.money_before.get(m.group("cur")) or lx.money_after.get(m.group("cur")) or default_currency
            )
            found.append((m.start(), minor, cur))
    if m := p.words.search(t):
        n = lx.numbers[m.group("w")] * (100 if m.group("h") else 1)
        found.append((m.start(), n * 100, lx.money_after[m.group("cur")]))
    if found:
        _, minor, cur = min(found)
        return minor, cur
    if allow_bare:
        scan = _PHONE.sub(" ", _without_dates(t, p))
        for m in p.bare.finditer(scan):
            before = scan[: m.start()].rstrip().rsplit(" ", 1)[-1].strip("#:")
            if (
                before in _NOT_MONEY_BEFORE
                or before in _ID_WORDS
                or not before
                and scan[: m.start()].rstrip().endswith("#")
            ):
                continue  # "at 5", "around 6": a time; "account 123456", "#4471": an identifier
            if len(m.group("n").replace(",", "").replace(".", "")) >= 6 and "," not in m.group("n"):
                continue  # a long run of digits without separators is an id, not an offer
            minor = _minor(m.group("n"))
            if minor and minor >= 1000:  # under 10: a day, an hour or a count, not an offer
                return minor, default_currency
        for m in p.spelled.finditer(t):  # "two hundred", "thirty a week"
            raw = m.group("w")
            n = (int(raw) if raw.isdigit() else lx.numbers.get(raw, 0)) * (100 if m.group("h") else 1)
            if n >= 10 and (m.group("h") or not raw.isdigit()):
                return n * 100, default_currency
    return None


def extract_amount_minor(text: str) -> int | None:
    got = extract_amount(text)
    return got[0] if got else None


def _without_dates(t: str, p: _Patterns) -> str:
    for name, pattern in p.dates:
        if name in ("iso", "numeric", "month_day", "day_month", "in_n", "ordinal", "ordinal_bare"):
            t = pattern.sub(" ", t)
    return re.sub(r"\b\d{1,2}(?::\d{2})? ?(?:am|pm)\b|\b\d{1,2}:\d{2}\b", " ", t)


def _next_date(today: date, month: int, day: int, year: int | None = None) -> date | None:
    try:
        if year is not None:
            return date(year, month, day)
        d = date(today.year, month, day)
        return d if d >= today else date(today.year + 1, month, day)
    except ValueError:
        return None


def _day_of_month(today: date, day: int) -> date | None:
    """The next `day` of a month on or after today."""
    if not 1 <= day <= 31:
        return None
    month, year = today.month, today.year
    for _ in range(3):
        if (month, year) != (today.month, today.year) or day >= today.day:
            if day <= calendar.monthrange(year, month)[1]:
                return date(year, month, day)
        month, year = (1, year + 1) if month == 12 else (month + 1, year)
    return None


def _resolve(name: str, m: re.Match[str], today: date, lx: Lexicon) -> date | None:
    if name == "after_tomorrow":
        return today + timedelta(days=2)
    if name == "iso":
        try:
            return date(int(m.group("y")), int(m.group("m")), int(m.group("d")))
        except ValueError:
            return None
    if name == "numeric":
        y = m.group("y")
        year = None if y is None else (int(y) + 2000 if len(y) == 2 else int(y))
        month, day = int(m.group("a")), int(m.group("b"))
        if month > 12 >= day:  # "15/12": day first
            month, day = day, month
        if not (1 <= month <= 12):
            return None
        return _next_date(today, month, day, year)
    if name in ("month_day", "day_month"):
        return _next_date(today, lx.months[m.group("m")], int(m.group("d")))
    if name == "in_n":
        raw = m.group("n")
        n = int(raw) if raw.isdigit() else lx.numbers.get(raw, 1)
        return today + timedelta(days=n * (7 if m.group("u") in lx.week_units else 1))
    if name == "end_of_month":
        return date(today.year, today.month, calendar.monthrange(today.year, today.month)[1])
    if name == "first_of_month":
        return _day_of_month(today, 1)
    if name in ("ordinal", "ordinal_bare"):
        return _day_of_month(today, int(m.group("d")))
    if name == "weekday":
        ahead = (lx.weekdays[m.group("wd")] - today.weekday()) % 7 or 7
        return today + timedelta(days=ahead)
    if name == "today":
        return today
    if name == "tomorrow":
        return today + timedelta(days=1)
    if name == "next_week":
        return today + timedelta(days=7 - today.weekday())
    if name == "next_month":
        return date(today.year + (today.month == 12), today.month % 12 + 1, 1)
    return None


def extract_date(text: str, today: date) -> date | None:
    """The first date the reply names, resolved against `today` (the debtor's local date)."""
    lx = lexicon()
    t = normalize(text)
    found: list[tuple[int, int, int, date]] = []  # start, end, rank (lower = more specific), date
    for rank, (name, pattern) in enumerate(_patterns(lx).dates):
        for m in pattern.finditer(t):
            d = _resolve(name, m, today, lx)
            if d is not None:
                found.append((m.start(), m.end(), rank, d))
                break
    if not found:
        return None
    found.sort()
    first = found[0]
    # "el 15 de diciembre": the ordinal "el 15" starts first, the day-and-month overlapping it says more
    overlapping = [f for f in found if f[0] < first[1]]
    return min(overlapping, key=lambda f: f[2])[3]


def extract_plan(text: str) -> str | None:
    """`week`, `fortnight` or `month` when the reply offers instalments ("$50 a week")."""
    t = normalize(text)
    hits = [(m.start(), period) for period, p in _patterns(lexicon()).plan.items() if (m := p.search(t))]
    return min(hits)[1] if hits else None


def extract_promise(text: str, today: date, default_currency: str = "USD") -> PromiseDetails:
    plan = extract_plan(text)
    amount = extract_amount(text, default_currency, allow_bare=True)
    when = extract_date(text, today)
    return PromiseDetails(
        amount_minor=amount[0] if amount else None,
        currency=amount[1] if amount else None,
        date=when,
        plan_every=plan if amount or plan else None,
    )
