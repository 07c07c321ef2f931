"""Cell parsers. Each returns the normalised value or raises `CellError` with a human-readable reason.

They are pure functions of the cell text (plus explicit options), so any cell content either parses or
raises `CellError`; nothing else escapes (the hypothesis fuzz test holds them to that).
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Literal

import phonenumbers
from arrears_shared.account_status import AccountStatus  # not .events: workers import no pydantic
from arrears_shared.money import minor_exponent
from phonenumbers import timezone as phone_timezone


class CellError(ValueError):
    """The cell's value is not acceptable; the message is the reason shown to the sheet owner."""


def clean(cell: object) -> str:
    """Strip, drop control characters and non-breaking spaces (common in pasted sheets)."""
    s = "" if cell is None else str(cell)
    if s.isprintable():
        return s.strip()
    s = s.replace("\u00a0", " ").replace("\u202f", " ").replace("\ufeff", "")
    s = "".join(ch for ch in s if ch.isprintable() or ch == " ")
    return s.strip()


# -- money ---------------------------------------------------------------------------------------------------
# ISO 4217 minor-unit exponents: arrears_shared.money.minor_exponent (one table for the whole platform)

_SYMBOLS = "$€£¥₹₩₱₦₪₫฿₴₽"
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
_AMOUNT_CODE = re.compile(r"^([A-Za-z]{3})\s*|\s*([A-Za-z]{3})$")
_DIGITS_GROUPED = re.compile(r"^\d{1,3}(?:[,. '’]\d{3})+$")
_NUMBER_CHARS = re.compile(r"[\d.,' ’]+")
_NON_DIGITS = re.compile(r"\D")
_STATUS_SEPARATORS = re.compile(r"[\s_-]+")
_DOTS_SPACES = re.compile(r"[.\s]+")


def parse_currency(cell: str, default: str) -> str:
    s = clean(cell).upper()
    if not s:
        return default
    if s in ("$", "US$"):
        return "USD"
    if not _CURRENCY_RE.match(s):
        raise CellError("currency must be a 3-letter ISO 4217 code")
    return s


def parse_decimal(cell: str) -> Decimal:
    """'$1,234.50', '1234.5', '1.234,50', '(120.00)', '-5', 'USD 10', '1 234,50' -> Decimal."""
    s = clean(cell)
    if not s:
        raise CellError("amount is empty")
    s = _AMOUNT_CODE.sub("", s).strip()
    negative = False
    if s.startswith("(") and s.endswith(")"):
        negative, s = True, s[1:-1].strip()
    s = s.strip(_SYMBOLS).strip()
    if s.startswith("-") or s.startswith("−"):
        negative, s = not negative, s[1:].strip()
    elif s.endswith("-"):
        negative, s = not negative, s[:-1].strip()
    elif s.startswith("+"):
        s = s[1:].strip()
    s = s.strip(_SYMBOLS).strip()
    if not s or not _NUMBER_CHARS.fullmatch(s) or not any(ch.isdigit() for ch in s):
        raise CellError("not a number")
    last_dot, last_comma = s.rfind("."), s.rfind(",")
    if last_dot >= 0 and last_comma >= 0:
        dec = "." if last_dot > last_comma else ","
    elif last_comma >= 0:
        # a single comma followed by exactly three digits is a thousands separator ("1,234")
        dec = "" if _DIGITS_GROUPED.match(s) else ","
    elif last_dot >= 0:
        dec = "" if s.count(".") > 1 and _DIGITS_GROUPED.match(s) else "."
    else:
        dec = ""
    if dec:
        whole, _, frac = s.rpartition(dec)
    else:
        whole, frac = s, ""
    if whole and not (whole.isdigit() or _DIGITS_GROUPED.match(whole)):
        raise CellError("digit grouping is not valid")
    if frac and not frac.isdigit():
        raise CellError("not a number")
    digits = _NON_DIGITS.sub("", whole) or "0"
    try:
        value = Decimal(f"{digits}.{frac or '0'}")
    except InvalidOperation as e:  # pragma: no cover - the regexes above make this unreachable
        raise CellError("not a number") from e
    if value >= Decimal(10) ** 15:
        raise CellError("amount is implausibly large")
    return -value if negative else value


def to_minor(value: Decimal, currency: str) -> int:
    exp = minor_exponent(currency)
    scaled = value.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise CellError(f"more than {exp} decimal places for {currency}")
    return int(scaled)


# The everyday shapes of an amount ("$1,369.55", "1369.5", "25"): read with integer arithmetic; anything
# else (signs, parentheses, codes, decimal commas, too many decimals) goes through `parse_decimal`.
_PLAIN_AMOUNT = re.compile(r"\$?(\d{1,3}(?:,\d{3})+|\d{1,15})(?:\.(\d{1,3}))?", re.ASCII)


def parse_amount(cell: str, currency: str) -> int:
    if m := _PLAIN_AMOUNT.fullmatch(cell):
        exp = minor_exponent(currency)
        whole, frac = m[1].replace(",", ""), m[2] or ""
        if len(frac) <= exp and len(whole) <= 15:
            return int(whole) * 10**exp + (int(frac.ljust(exp, "0")) if frac else 0)
    return to_minor(parse_decimal(cell), currency)


# -- dates ---------------------------------------------------------------------------------------------------

DateOrder = Literal["US", "EU"]
_EXCEL_EPOCH = date(1899, 12, 30)
_ISO = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[T ].*)?$")
_NUMERIC = re.compile(r"^(\d{1,2})([/.-])(\d{1,2})\2(\d{2}|\d{4})(?:[T ].*)?$")
_SERIAL = re.compile(r"^\d{4,6}(?:\.\d+)?$")
_TEXT_FORMATS = (
    "%b %d %Y",
    "%B %d %Y",
    "%d %b %Y",
    "%d %B %Y",
    "%b %d %y",
    "%d %b %y",
    "%d-%b-%Y",
    "%d-%b-%y",
    "%Y%m%d",
)
MIN_YEAR, MAX_YEAR = 1900, 2200


def _mk(y: int, m: int, d: int) -> date:
    if not MIN_YEAR <= y <= MAX_YEAR:
        raise CellError(f"year {y} is out of range")
    try:
        return date(y, m, d)
    except ValueError as e:
        raise CellError(f"not a calendar date ({e})") from e


@functools.lru_cache(maxsize=4096)  # a sheet repeats its dates (due dates, payment days) many times
def parse_date(cell: str, order: DateOrder = "US") -> date:
    """ISO (2024-03-05), US 03/05/2024, EU 05/03/2024 (by `order` when ambiguous; a day > 12 decides),
    DD.MM.YYYY, two-digit years (20yy), month names (Mar 5, 2024) and Excel serial numbers (45356)."""
    s = clean(cell)
    if not s:
        raise CellError("date is empty")
    if m := _ISO.match(s):
        return _mk(int(m[1]), int(m[2]), int(m[3]))
    if m := _NUMERIC.match(s):
        a, sep, b, y = int(m[1]), m[2], int(m[3]), int(m[4])
        if len(m[4]) == 2:
            y += 2000
        if sep == ".":  # dotted dates are day-first everywhere they are used
            day, month = a, b
        elif a > 12 and b <= 12:
            day, month = a, b
        elif b > 12 and a <= 12:
            day, month = b, a
        elif order == "EU":
            day, month = a, b
        else:
            day, month = b, a
        return _mk(y, month, day)
    if _SERIAL.match(s):
        serial = float(s)
        if not 1 <= serial < 120_000:
            raise CellError("number is not a plausible spreadsheet date serial")
        d = _EXCEL_EPOCH + timedelta(days=int(serial))
        return _mk(d.year, d.month, d.day)
    text = re.sub(r"[,\s]+", " ", s).strip()
    for fmt in _TEXT_FORMATS:
        try:
            d = datetime.strptime(text, fmt).date()
        except ValueError:
            continue
        return _mk(d.year, d.month, d.day)
    raise CellError("not a recognised date (use YYYY-MM-DD)")


# -- flags and enumerations ----------------------------------------------------------------------------------

_TRUE = {"y", "yes", "true", "t", "1", "x", "opt in", "optin", "opted in", "✓", "✔"}
_FALSE = {"n", "no", "false", "f", "0", "", "opt out", "optout", "opted out", "-"}


def parse_flag(cell: str) -> bool:
    s = clean(cell).casefold()
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise CellError("expected Y/N, yes/no, true/false or 1/0")


_STATUS: dict[str, AccountStatus] = {
    "": AccountStatus.OPEN,
    "open": AccountStatus.OPEN,
    "active": AccountStatus.OPEN,
    "overdue": AccountStatus.OPEN,
    "past due": AccountStatus.OPEN,
    "paid": AccountStatus.PAID,
    "paid in full": AccountStatus.PAID,
    "settled": AccountStatus.PAID,
    "promise": AccountStatus.PROMISE,
    "promise to pay": AccountStatus.PROMISE,
    "promised": AccountStatus.PROMISE,
    "ptp": AccountStatus.PROMISE,
    "dispute": AccountStatus.DISPUTE,
    "disputed": AccountStatus.DISPUTE,
    "in dispute": AccountStatus.DISPUTE,
    "closed": AccountStatus.CLOSED,
    "written off": AccountStatus.CLOSED,
    "write off": AccountStatus.CLOSED,
}


def parse_status(cell: str) -> AccountStatus:
    s = _STATUS_SEPARATORS.sub(" ", clean(cell).casefold()).strip()
    try:
        return _STATUS[s]
    except KeyError:
        raise CellError("status must be Open, Paid, Promise, Dispute or Closed") from None


# -- contact details -----------------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@(?=.{1,253}$)"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)


def parse_email(cell: str) -> str | None:
    s = clean(cell)
    if not s:
        return None
    if s.lower().startswith("mailto:"):
        s = s[7:]
    if not _EMAIL.match(s) or ".." in s.split("@")[0] or s.startswith(".") or s.split("@")[0].endswith("."):
        raise CellError("not a valid email address")
    local, domain = s.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


# NANP numbers in their everyday shapes: "(212) 555-0100", "212-555-0100", "212.555.0100", "2125550100",
# "1-212-555-0100", "+1 212-555-0100". `phonenumbers.parse` reads each of them as country code 1 and the ten
# digits (the leading 1 is the country code or the national prefix; an area code never starts with 0 or 1),
# so they are built directly: parsing is most of the cost of a phone number (~13 µs of ~20), and these shapes
# are most of a North American sheet. Anything else (extensions, letters, other countries) is parsed.
_NANP = re.compile(r"(?:(\+)?1[ .-]?)?(?:\(([2-9]\d\d)\)|([2-9]\d\d))[ .-]?(\d{3})[ .-]?(\d{4})", re.ASCII)
_NANP_REGIONS = frozenset({"US", "CA"})  # without "+1", only where the digits mean the same as there


def nanp_number(s: str, region: str) -> phonenumbers.PhoneNumber | None:
    """`phonenumbers.parse(s, region)` for the common NANP shapes, else None (not a verdict on `s`)."""
    m = _NANP.fullmatch(s)
    if m is None or not (m[1] or region in _NANP_REGIONS):
        return None
    return phonenumbers.PhoneNumber(country_code=1, national_number=int((m[2] or m[3]) + m[4] + m[5]))


def parse_phone(cell: str, region: str) -> PhoneNumber | None:
    s = clean(cell)
    if not s:
        return None
    if len(s) > 40:
        raise CellError("phone number is too long")
    n = nanp_number(s, region)
    if n is None:
        try:
            n = phonenumbers.parse(s, region)
        except phonenumbers.NumberParseException as e:
            raise CellError("not a phone number") from e
    # Fast path: most numbers belong to the region they were parsed with, and checking one region is
    # much cheaper than `is_valid_number` (which scans every region sharing the country code, 25 for +1).
    if phonenumbers.is_valid_number_for_region(n, region):
        return PhoneNumber(n, region)
    other = phonenumbers.region_code_for_number(n)
    if other and other != "ZZ" and phonenumbers.is_valid_number_for_region(n, other):
        return PhoneNumber(n, other)
    raise CellError(f"not a valid phone number for region {region}")


class PhoneNumber:
    __slots__ = ("number", "region")

    def __init__(self, number: phonenumbers.PhoneNumber, region: str) -> None:
        self.number, self.region = number, region


def e164(n: PhoneNumber) -> str:
    return phonenumbers.format_number(n.number, phonenumbers.PhoneNumberFormat.E164)


def phone_region(n: PhoneNumber) -> str | None:
    return n.region


def zone_from_phone(n: PhoneNumber) -> str | None:
    # NANP (+1) numbers are geographic by area code (toll-free/premium codes map to every NANP zone), so the
    # prefix table alone is exact there, and skips the costly number-type classification. Elsewhere mobile
    # numbers are not geographic (e.g. Australia), so the full lookup decides.
    if n.number.country_code == 1:
        zones = phone_timezone.time_zones_for_geographical_number(n.number)
    else:
        zones = phone_timezone.time_zones_for_number(n.number)
    if len(zones) == 1 and zones[0] != "Etc/Unknown":
        return str(zones[0])
    return None


# -- places and time zones -----------------------------------------------------------------------------------

_COUNTRY_ALIASES = {
    "USA": "US",
    "UNITED STATES": "US",
    "UNITED STATES OF AMERICA": "US",
    "U S": "US",
    "U S A": "US",
    "AMERICA": "US",
    "UK": "GB",
    "UNITED KINGDOM": "GB",
    "GREAT BRITAIN": "GB",
    "ENGLAND": "GB",
    "CANADA": "CA",
    "MEXICO": "MX",
    "INDIA": "IN",
    "AUSTRALIA": "AU",
    "IRELAND": "IE",
    "GERMANY": "DE",
    "FRANCE": "FR",
    "SPAIN": "ES",
    "NEW ZEALAND": "NZ",
}


def parse_country(cell: str) -> str | None:
    s = _DOTS_SPACES.sub(" ", clean(cell).upper()).strip()
    if not s:
        return None
    s = _COUNTRY_ALIASES.get(s, s)
    if len(s) == 2 and s in phonenumbers.SUPPORTED_REGIONS:
        return s
    raise CellError("country must be an ISO 3166-1 alpha-2 code (e.g. US)")


US_STATES: dict[str, str] = {
    "ALABAMA": "AL", "ALASKA": "AK", "ARIZONA": "AZ", "ARKANSAS": "AR", "CALIFORNIA": "CA",
    "COLORADO": "CO", "CONNECTICUT": "CT", "DELAWARE": "DE", "DISTRICT OF COLUMBIA": "DC", "FLORIDA": "FL",
    "GEORGIA": "GA", "HAWAII": "HI", "IDAHO": "ID", "ILLINOIS": "IL", "INDIANA": "IN", "IOWA": "IA",
    "KANSAS": "KS", "KENTUCKY": "KY", "LOUISIANA": "LA", "MAINE": "ME", "MARYLAND": "MD",
    "MASSACHUSETTS": "MA", "MICHIGAN": "MI", "MINNESOTA": "MN", "MISSISSIPPI": "MS", "MISSOURI": "MO",
    "MONTANA": "MT", "NEBRASKA": "NE", "NEVADA": "NV", "NEW HAMPSHIRE": "NH", "NEW JERSEY": "NJ",
    "NEW MEXICO": "NM", "NEW YORK": "NY", "NORTH CAROLINA": "NC", "NORTH DAKOTA": "ND", "OHIO": "OH",
    "OKLAHOMA": "OK", "OREGON": "OR", "PENNSYLVANIA": "PA", "RHODE ISLAND": "RI", "SOUTH CAROLINA": "SC",
    "SOUTH DAKOTA": "SD", "TENNESSEE": "TN", "TEXAS": "TX", "UTAH": "UT", "VERMONT": "VT",
    "VIRGINIA": "VA", "WASHINGTON": "WA", "WEST VIRGINIA": "WV", "WISCONSIN": "WI", "WYOMING": "WY",
    "PUERTO RICO": "PR", "GUAM": "GU", "US VIRGIN ISLANDS": "VI", "AMERICAN SAMOA": "AS",
    "NORTHERN MARIANA ISLANDS": "MP",
}  # fmt: skip
_US_CODES = set(US_STATES.values())

# Only states (and territories) that lie entirely in one zone. States split across zones (TX, FL, IN, KY,
# TN, MI, ND, SD, NE, KS, ID, OR, AK) map to nothing: guessing the majority zone could put a message at
# 07:00 for part of the state, whereas "unknown" makes the compliance gate require every candidate zone.
US_STATE_ZONES: dict[str, str] = {
    **dict.fromkeys(
        ["CT", "DE", "DC", "GA", "ME", "MD", "MA", "NH", "NJ", "NY", "NC", "OH", "PA", "RI", "SC", "VT"]
        + ["VA", "WV"],
        "America/New_York",
    ),
    **dict.fromkeys(["AL", "AR", "IL", "IA", "LA", "MN", "MS", "MO", "OK", "WI"], "America/Chicago"),
    **dict.fromkeys(["CO", "MT", "NM", "UT", "WY"], "America/Denver"),
    "AZ": "America/Phoenix",
    **dict.fromkeys(["CA", "NV", "WA"], "America/Los_Angeles"),
    "HI": "Pacific/Honolulu",
    "PR": "America/Puerto_Rico",
    "VI": "America/St_Thomas",
    "GU": "Pacific/Guam",
    "AS": "Pacific/Pago_Pago",
    "MP": "Pacific/Saipan",
}


def parse_state(cell: str) -> str | None:
    s = _DOTS_SPACES.sub(" ", clean(cell).upper()).strip()
    if not s:
        return None
    if s in US_STATES:
        return US_STATES[s]
    if len(s) > 64:
        raise CellError("state is too long")
    return s


def zone_from_state(state: str | None, country: str | None) -> str | None:
    if state is None or country not in (None, "US") or state not in _US_CODES:
        return None
    return US_STATE_ZONES.get(state)


_ADDRESS_STATE = re.compile(
    r"(?:^|[\s,])([A-Z]{2})\.?(?:\s+(\d{5})(?:-\d{4})?)?\s*(?:,?\s*(?:USA?|United States))?\s*$"
)


def state_from_address(cell: str) -> str | None:
    """The US state of a one-line address ("12 Main St, Springfield, IL 62704", "..., Austin TX"): the
    two-letter code before an optional ZIP at the end, or a full state name after the last comma. None when
    nothing recognisable is there (never raises: an address is free text)."""
    s = clean(cell)
    if not s or len(s) > 500:
        return None
    if m := _ADDRESS_STATE.search(s):
        code = m[1]
        if code in _US_CODES and (m[2] or "," in s):
            return code
    tail = re.sub(r"[\d\s-]+$", "", s.rsplit(",", 1)[-1]).strip().upper()
    return US_STATES.get(_DOTS_SPACES.sub(" ", tail))


@functools.cache
def _country_zones() -> dict[str, tuple[str, ...]]:
    """ISO 3166 country -> its IANA zones, from tzdata's zone.tab (the `tzdata` package, else the OS)."""
    import importlib.resources

    try:
        text = (importlib.resources.files("tzdata.zoneinfo") / "zone.tab").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover - tzdata is a dependency
        text = open("/usr/share/zoneinfo/zone.tab", encoding="utf-8").read()  # noqa: SIM115
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            parts = line.split("\t")
            if len(parts) >= 3:
                out.setdefault(parts[0], []).append(parts[2])
    return {k: tuple(v) for k, v in out.items()}


def zone_from_country(country: str | None) -> str | None:
    """The zone of a country that has exactly one (GB, IN, IE, NZ...); None for US, CA, AU, MX..."""
    zones = _country_zones().get(country or "", ())
    return zones[0] if len(zones) == 1 else None


@functools.cache
def _zones() -> dict[str, str]:
    return {z.casefold(): z for z in zoneinfo.available_timezones()}


def parse_zone(cell: str) -> str | None:
    s = clean(cell).replace(" ", "_")
    if not s:
        return None
    zone = _zones().get(s.casefold())
    if zone is None:
        raise CellError("not an IANA time zone name (e.g. America/Chicago)")
    return zone


# -- masking -------------------------------------------------------------------------------------------------


MaskKind = Literal["phone", "email", "name", "text", "id", "plain"]
# a phone-like run: 9+ digits, possibly grouped by spaces, dots, dashes, parentheses (dates have 8 at most)
_PHONE_LIKE = re.compile(r"\+?\(?\d[\d\s().-]{7,}\d")
_EMAIL_LIKE = re.compile(r"[^\s@<>()\[\],;:\"']+@[^\s@<>()\[\],;:\"']+")


def _mask_embedded(v: str) -> str:
    """`v` with every email address and phone-like number in it masked (a name typed into Balance is not
    found: free-text columns are masked whole, kind "text")."""
    v = _EMAIL_LIKE.sub(lambda m: mask(m.group(), "email"), v)
    return _PHONE_LIKE.sub(
        lambda m: mask(m.group(), "phone") if sum(c.isdigit() for c in m.group()) >= 9 else m.group(), v
    )


def mask(value: str, kind: MaskKind) -> str:
    """What a reject report may show of an offending value: PII masked, everything truncated. `text` (free
    text: notes, addresses) shows only its length; `id` (an account id) is only truncated; `plain` (a
    structured cell: amount, date, currency, status) keeps its text but masks any email address or
    phone-like number in it."""
    v = clean(value)
    if not v:
        return ""
    if kind == "phone":
        digits = re.sub(r"\D", "", v)
        return "•" * max(len(digits) - 2, 1) + digits[-2:] if len(digits) > 2 else "•" * len(v)
    if kind == "email":
        local, at, domain = v.partition("@")
        return f"{local[:1]}•••{at}{'•••' + domain[-4:] if domain else ''}"
    if kind == "name":
        return v[:1] + "•••"
    if kind == "text":
        return f"••• ({len(v)} characters)"
    if kind == "plain":
        v = _mask_embedded(v)
    return v[:64] + ("…" if len(v) > 64 else "")
