"""Demo PME master sheet: realistic, messy, deterministic rows as a finance team keeps them.

The rows look like a real collections sheet: US customers mostly (some Canadian, British and Indian),
phone numbers in mixed formatting, balances as ``$1,234.50`` / ``1234.5`` / ``(120.00)``, US and ISO
dates, blank time zones, ``Y``/``yes``/``TRUE`` consents. About ``bad_row_ratio`` of the rows are broken
the way real sheets break (missing or duplicated account id, unparseable balance, garbage date, invalid
phone); :func:`generate_pme_sheet` says which.

Contact details are safe to send to: US/Canadian phone numbers are in the fictional ``555-0100``–``0199``
block, British ones in Ofcom's drama ranges, and emails use the reserved ``example.*`` domains. India has
no reserved fictional range, so Indian numbers are merely syntactically valid mobiles — never point demo
data at a real SMS provider.

Speed: names come from faker's locale pools (read once, no Faker instance); each row is assembled with
``random.Random(seed)``; 100,000 rows take well under 3 s.
"""

from __future__ import annotations

import csv
import itertools
import random
from bisect import bisect
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")

PME_COLUMNS: tuple[str, ...] = (
    "Account ID",
    "Customer Name",
    "Phone",
    "Email",
    "Balance",
    "Currency",
    "Due Date",
    "Last Payment Date",
    "Last Payment Amount",
    "Time Zone",
    "State",
    "Country",
    "SMS Consent",
    "Email Consent",
    "Status",
    "Notes",
    "Arrears Status",
    "Arrears Reason",
)
"""Header row of the PME master sheet; the last two are write-back columns the platform fills."""

DEFECT_KINDS: tuple[str, ...] = (
    "missing_account_id",
    "bad_balance",
    "duplicate_account_id",
    "bad_date",
    "invalid_phone",
)

# (state, relative weight ~ population, IANA zone, area codes)
_US_STATES: tuple[tuple[str, float, str, tuple[int, ...]], ...] = (
    ("CA", 39.0, "America/Los_Angeles", (213, 310, 415, 510, 619, 714, 818, 916, 408, 949)),
    ("TX", 30.0, "America/Chicago", (214, 512, 713, 210, 817, 972, 281, 469)),
    ("FL", 22.0, "America/New_York", (305, 407, 813, 904, 561, 954, 727)),
    ("NY", 20.0, "America/New_York", (212, 315, 516, 718, 917, 646, 585, 914)),
    ("PA", 13.0, "America/New_York", (215, 412, 610, 717, 267)),
    ("IL", 12.5, "America/Chicago", (312, 773, 847, 630, 217)),
    ("OH", 11.8, "America/New_York", (216, 614, 513, 330, 419)),
    ("GA", 11.0, "America/New_York", (404, 770, 678, 912)),
    ("NC", 10.7, "America/New_York", (704, 919, 336, 910)),
    ("MI", 10.0, "America/Detroit", (313, 616, 248, 517, 734)),
    ("NJ", 9.3, "America/New_York", (201, 973, 908, 732, 609)),
    ("VA", 8.7, "America/New_York", (703, 804, 757, 540)),
    ("WA", 7.8, "America/Los_Angeles", (206, 425, 509, 253, 360)),
    ("AZ", 7.4, "America/Phoenix", (480, 602, 520, 623)),
    ("TN", 7.1, "America/Chicago", (615, 901, 731)),
    ("MA", 7.0, "America/New_York", (617, 508, 781, 978, 413)),
    ("IN", 6.8, "America/Indiana/Indianapolis", (317, 260, 765)),
    ("MO", 6.2, "America/Chicago", (314, 816, 417, 573)),
    ("MD", 6.2, "America/New_York", (301, 410, 443, 240)),
    ("WI", 5.9, "America/Chicago", (414, 608, 920, 262)),
    ("CO", 5.9, "America/Denver", (303, 720, 719, 970)),
    ("MN", 5.7, "America/Chicago", (612, 651, 763, 952, 507)),
    ("SC", 5.3, "America/New_York", (803, 843, 864)),
    ("AL", 5.1, "America/Chicago", (205, 251, 256, 334)),
    ("LA", 4.6, "America/Chicago", (504, 225, 318, 337)),
    ("KY", 4.5, "America/New_York", (502, 859, 606)),
    ("OR", 4.2, "America/Los_Angeles", (503, 541, 971)),
    ("OK", 4.0, "America/Chicago", (405, 918, 580)),
    ("CT", 3.6, "America/New_York", (203, 860, 475)),
    ("UT", 3.4, "America/Denver", (801, 385, 435)),
    ("NV", 3.2, "America/Los_Angeles", (702, 775, 725)),
    ("IA", 3.2, "America/Chicago", (515, 319, 563, 712)),
    ("AR", 3.0, "America/Chicago", (501, 479, 870)),
    ("KS", 2.9, "America/Chicago", (316, 785, 913, 620)),
    ("MS", 2.9, "America/Chicago", (601, 662, 228)),
    ("NM", 2.1, "America/Denver", (505, 575)),
    ("NE", 2.0, "America/Chicago", (402, 308)),
    ("WV", 1.8, "America/New_York", (304, 681)),
    ("ID", 1.9, "America/Boise", (208, 986)),
    ("HI", 1.4, "Pacific/Honolulu", (808,)),
    ("NH", 1.4, "America/New_York", (603,)),
    ("ME", 1.4, "America/New_York", (207,)),
    ("RI", 1.1, "America/New_York", (401,)),
    ("MT", 1.1, "America/Denver", (406,)),
    ("DE", 1.0, "America/New_York", (302,)),
    ("SD", 0.9, "America/Chicago", (605,)),
    ("ND", 0.8, "America/Chicago", (701,)),
    ("AK", 0.7, "America/Anchorage", (907,)),
    ("DC", 0.7, "America/New_York", (202,)),
    ("VT", 0.6, "America/New_York", (802,)),
    ("WY", 0.6, "America/Denver", (307,)),
)
_CA_PROVINCES: tuple[tuple[str, float, str, tuple[int, ...]], ...] = (
    ("ON", 15.0, "America/Toronto", (416, 647, 613, 905, 519)),
    ("QC", 8.5, "America/Toronto", (514, 438, 418, 450)),
    ("BC", 5.3, "America/Vancouver", (604, 778, 250)),
    ("AB", 4.5, "America/Edmonton", (403, 587, 780)),
    ("MB", 1.4, "America/Winnipeg", (204,)),
    ("SK", 1.2, "America/Regina", (306,)),
    ("NS", 1.0, "America/Halifax", (902,)),
)
# (county/region, weight, national-format template for Ofcom's drama range; {n} = 3 digits)
_GB_AREAS: tuple[tuple[str, float, str], ...] = (
    ("London", 9.0, "020 7946 0{n}"),
    ("West Midlands", 2.9, "0121 496 0{n}"),
    ("Greater Manchester", 2.8, "0161 496 0{n}"),
    ("West Yorkshire", 2.3, "0113 496 0{n}"),
    ("Merseyside", 1.4, "0151 496 0{n}"),
    ("South Yorkshire", 1.4, "0114 496 0{n}"),
    ("Tyne and Wear", 1.1, "0191 498 0{n}"),
    ("Glasgow City", 0.6, "0141 496 0{n}"),
    ("Bristol", 0.5, "0117 496 0{n}"),
    ("City of Edinburgh", 0.5, "0131 496 0{n}"),
    ("Leicestershire", 0.7, "0116 496 0{n}"),
    ("Berkshire", 0.9, "0118 496 0{n}"),
    ("Northern Ireland", 0.6, "028 9649 6{n}"),
    ("Wales", 0.5, "029 2018 0{n}"),
)
_IN_STATES: tuple[tuple[str, float], ...] = (
    ("Maharashtra", 5.0),
    ("Karnataka", 3.0),
    ("Delhi", 3.0),
    ("Tamil Nadu", 2.5),
    ("Telangana", 2.0),
    ("Gujarat", 1.5),
    ("West Bengal", 1.5),
)
_COUNTRIES = (("US", 86.0), ("CA", 7.0), ("GB", 4.5), ("IN", 2.5))
_CURRENCY = {"US": "USD", "CA": "CAD", "GB": "GBP", "IN": "INR"}
_TZ_ABBREVIATIONS = {
    "America/New_York": "EST",
    "America/Detroit": "EST",
    "America/Indiana/Indianapolis": "EST",
    "America/Toronto": "EST",
    "America/Chicago": "CST",
    "America/Winnipeg": "CST",
    "America/Denver": "MST",
    "America/Boise": "MST",
    "America/Phoenix": "MST",
    "America/Edmonton": "MST",
    "America/Los_Angeles": "PST",
    "America/Vancouver": "PST",
}
# days past due buckets: current (not yet due), 1-30, 31-60, 61-90, 91-120, 120+
_DPD_BUCKETS = (
    (-30, 0, 30.0),
    (1, 30, 25.0),
    (31, 60, 15.0),
    (61, 90, 10.0),
    (91, 120, 8.0),
    (121, 540, 12.0),
)
_STATUSES = (("Open", 68.0), ("Paid", 16.0), ("Promise", 10.0), ("Dispute", 6.0))
_CONSENTS = (
    ("Y", 40.0),
    ("N", 8.0),
    ("yes", 14.0),
    ("Yes", 6.0),
    ("no", 3.0),
    ("TRUE", 12.0),
    ("FALSE", 3.0),
    ("", 14.0),
)
_EMAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com", "example.co.uk")
_NOTES = (
    "Called, left VM",
    "Customer asked for email only",
    "Promised to pay by the 15th",
    "Disputes late fee",
    "Check w/ legal - possible bankruptcy",
    "Do not call at work",
    "Prefers Spanish",
    "Payment plan: 3 installments",
    "Sent invoice copy",
    "Wrong number reported once",
    "Spoke to spouse",
    "Autopay failed - card expired",
)
_BAD_BALANCES = ("N/A", "TBD", "$1,2,3.4.5", "see notes", "#REF!", "12..50", "--")
_BAD_DATES = ("13/45/2024", "next friday", "00/00/0000", "2024-02-30", "#VALUE!", "Q3", "31/31/2023")


# five-digit Indian mobile prefixes that libphonenumber accepts with any five-digit suffix
_IN_MOBILE_PREFIXES = (
    "98200", "98210", "98330", "98670", "99670", "99870", "97690", "97730", "90040", "90290", "88790",
    "88280", "70450", "70210", "63520", "62900", "81080", "80970", "95940", "93200", "94440", "91670",
    "73040", "77380", "86550", "87790",
)  # fmt: skip


@dataclass(frozen=True)
class DemoSheet:
    """Generated sheet: ``rows[0]`` is the header; ``defects`` maps a row index in ``rows`` to its defect."""

    rows: list[list[str]]
    defects: dict[int, str]

    @property
    def good_rows(self) -> list[list[str]]:
        return [row for i, row in enumerate(self.rows[1:], start=1) if i not in self.defects]


@dataclass(frozen=True)
class _Names:
    """One locale's name pool: display names, lower-cased forms for emails, cumulative weights."""

    first: tuple[str, ...]
    first_lower: tuple[str, ...]
    first_cum: tuple[float, ...]
    last: tuple[str, ...]
    last_lower: tuple[str, ...]
    last_cum: tuple[float, ...]


def _pool(pool: Mapping[str, float] | Sequence[str]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    if isinstance(pool, Mapping):
        names, weights = tuple(pool), [float(w) for w in pool.values()]
    else:
        names = tuple(pool)
        weights = [1.0] * len(names)
    return names, tuple(itertools.accumulate(weights))


def _names() -> dict[str, _Names]:
    from faker.providers.person.en_GB import Provider as GBPerson
    from faker.providers.person.en_IN import Provider as INPerson
    from faker.providers.person.en_US import Provider as USPerson

    out: dict[str, _Names] = {}
    for country, provider in (("US", USPerson), ("GB", GBPerson), ("IN", INPerson)):
        first, first_cum = _pool(provider.first_names)
        last, last_cum = _pool(provider.last_names)
        out[country] = _Names(
            first,
            tuple(f.lower().replace(" ", "") for f in first),
            first_cum,
            last,
            tuple(x.lower().replace(" ", "").replace("'", "") for x in last),
            last_cum,
        )
    out["CA"] = out["US"]
    return out


def _date_formats(d: date) -> tuple[str, str, str]:
    return f"{d.month:02d}/{d.day:02d}/{d.year}", f"{d.month}/{d.day}/{d.year}", d.isoformat()


def _pick_date(formats: tuple[str, str, str], u: float) -> str:
    return formats[0] if u < 0.72 else formats[1] if u < 0.82 else formats[2]


def _money(cents: int, country: str, u: float) -> str:
    """A balance as people type it; ``cents`` < 0 is a credit, shown accountant-style in parentheses."""
    whole, frac = divmod(abs(cents), 100)
    if cents < 0:
        return f"({whole:,}.{frac:02d})" if u < 0.8 else f"-{whole}.{frac:02d}"
    if country == "IN":
        if u < 0.35:
            return f"₹{_indian_grouping(whole)}.{frac:02d}"
        if u < 0.55:
            return f"Rs. {_indian_grouping(whole)}"
        return f"{whole}.{frac:02d}"
    if u < 0.45:
        return f"{'£' if country == 'GB' else '$'}{whole:,}.{frac:02d}"
    if u < 0.75:
        if frac == 0:
            return str(whole)
        return f"{whole}.{frac:02d}".rstrip("0")
    if u < 0.9:
        return f"{whole:,}.{frac:02d}"
    return f"{whole}.{frac:02d}"


def _indian_grouping(whole: int) -> str:
    """12345678 -> ``1,23,45,678`` (lakh/crore grouping)."""
    text = str(whole)
    if len(text) <= 3:
        return text
    head, tail = text[:-3], text[-3:]
    groups: list[str] = []
    while len(head) > 2:
        groups.insert(0, head[-2:])
        head = head[:-2]
    if head:
        groups.insert(0, head)
    return ",".join(groups) + "," + tail


def _nanp_phone(area: int, line: int, u: float) -> str:
    """A fictional NANP number ``NPA-555-01XX`` in one of the formats people type."""
    if u < 0.35:
        return f"({area}) 555-01{line:02d}"
    if u < 0.55:
        return f"+1 {area}-555-01{line:02d}"
    if u < 0.68:
        return f"{area}.555.01{line:02d}"
    if u < 0.82:
        return f"{area}-555-01{line:02d}"
    if u < 0.9:
        return f"{area}55501{line:02d}"
    if u < 0.96:
        return f"+1{area}55501{line:02d}"
    return f"1-{area}-555-01{line:02d}"


def _gb_phone(template: str, n: int, u: float) -> str:
    national = template.format(n=f"{n:03d}")
    if u < 0.55:
        return national
    if u < 0.9:
        return "+44 " + national[1:]
    return "+44" + national[1:].replace(" ", "")


def _in_phone(prefix: str, suffix: int, u: float) -> str:
    digits = f"{prefix}{suffix:05d}"
    if u < 0.45:
        return f"+91 {prefix} {suffix:05d}"
    if u < 0.7:
        return digits
    if u < 0.85:
        return f"+91-{digits}"
    return f"0{prefix} {suffix:05d}"


def _invalid_phone(rng: random.Random) -> str:
    area = rng.choice((415, 212, 312, 713))
    line = rng.randrange(100)
    return rng.choice(
        (
            f"555-01{line:02d}",
            f"({area}) 555-01",
            "(123) 456-7890",
            "000-000-0000",
            f"+1 {area} 555 01{line:02d}5",
            f"{area}-555-013",
        )
    )


def _email(first: str, last: str, u: float, k: int, domain_u: float) -> str:
    if u < 0.35:
        local = f"{first}.{last}"
    elif u < 0.6:
        local = f"{first[:1]}{last}{k % 98 + 1}"
    elif u < 0.8:
        local = f"{first}{last[:1]}_{k % 39 + 60}"
    else:
        local = f"{first}{k % 9900 + 100}"
    return f"{local}@{_EMAIL_DOMAINS[bisect(_DOMAIN_CUM, domain_u)]}"


_DOMAIN_CUM = (0.5, 0.7, 0.85, 0.93)


def _choices(rng: random.Random, pairs: Sequence[tuple[T, float]], k: int) -> list[T]:
    items = [p[0] for p in pairs]
    return rng.choices(items, cum_weights=list(itertools.accumulate(p[1] for p in pairs)), k=k)


def generate_pme_sheet(n: int, *, seed: int = 7, today: date, bad_row_ratio: float = 0.02) -> DemoSheet:
    """Header + ``n`` rows, and which rows are deliberately bad (``round(n * bad_row_ratio)`` of them).

    Deterministic for (``n``, ``seed``, ``today``, ``bad_row_ratio``) with a given faker version (the
    name pools come from faker's locale data). Categorical columns are drawn column-wise with
    ``random.Random(seed).choices``; the row loop only combines them. Raises ``ValueError`` for
    ``n < 0`` or a ratio outside [0, 1].
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    if not 0.0 <= bad_row_ratio <= 1.0:
        raise ValueError("bad_row_ratio must be within [0, 1]")
    rng = random.Random(seed)
    rand = rng.random
    names = _names()

    countries = _choices(rng, _COUNTRIES, n)
    statuses = _choices(rng, _STATUSES, n)
    buckets = _choices(rng, [(b, b[2]) for b in _DPD_BUCKETS], n)
    consents = _choices(rng, _CONSENTS, 2 * n)
    per_country = Counter(countries)
    us = iter(_choices(rng, [(s, s[1]) for s in _US_STATES], per_country["US"]))
    ca = iter(_choices(rng, [(s, s[1]) for s in _CA_PROVINCES], per_country["CA"]))
    gb = iter(_choices(rng, [(a, a[1]) for a in _GB_AREAS], per_country["GB"]))
    india = iter(_choices(rng, _IN_STATES, per_country["IN"]))
    dates: dict[int, tuple[str, str, str]] = {}

    def fmt(days_ago: int) -> tuple[str, str, str]:
        got = dates.get(days_ago)
        if got is None:
            got = dates[days_ago] = _date_formats(today - timedelta(days=days_ago))
        return got

    rows: list[list[str]] = [list(PME_COLUMNS)]
    next_id = 100 + int(rand() * 900)
    for i in range(n):
        next_id += 1 if rand() < 0.9 else 2 + int(rand() * 4)
        country = countries[i]
        u = rand()
        if country == "US" or country == "CA":
            state, _, tz, areas = next(us) if country == "US" else next(ca)
            phone = _nanp_phone(areas[int(rand() * len(areas))], int(u * 100), rand())
        elif country == "GB":
            state, _, template = next(gb)
            if u < 0.3:
                state = ""
            tz = "Europe/London"
            phone = _gb_phone(template, int(rand() * 1000), rand())
        else:
            state = next(india)
            tz = "Asia/Kolkata"
            phone = _in_phone(
                _IN_MOBILE_PREFIXES[int(u * len(_IN_MOBILE_PREFIXES))], int(rand() * 100000), rand()
            )

        pool = names[country]
        fi = bisect(pool.first_cum, rand() * pool.first_cum[-1])
        li = bisect(pool.last_cum, rand() * pool.last_cum[-1])
        first, last = pool.first[fi], pool.last[li]
        u = rand()
        name = f"{first} {last}" if u < 0.9 else f"{last}, {first}" if u < 0.96 else f"{first} {last}".upper()
        u = rand()
        email = _email(pool.first_lower[fi], pool.last_lower[li], u / 0.92, i, rand()) if u < 0.92 else ""

        status = statuses[i]
        lo, hi, _w = buckets[i]
        dpd = lo + int(rand() * (hi - lo + 1))
        u = rand()
        if status == "Paid":
            cents = 0 if u < 0.95 else -(500 + int(rand() * 24_500))
        elif u < 0.004:
            cents = -(500 + int(rand() * 24_500))
        else:
            cents = int(min(max(rng.lognormvariate(6.2, 1.0), 5.0), 60_000.0) * 100)
        balance = _money(cents, country, rand())
        u = rand()
        if u < 0.7:
            paid_ago = dpd + int(u * 114) - 40
            if paid_ago < 0:
                paid_ago = int(rand() * 10)
            pay = max(500, int(abs(cents) * _INSTALMENTS[int(rand() * 5)])) if cents else 2500
            last_date = _pick_date(fmt(paid_ago), rand())
            last_amount = _money(pay, country, rand())
        else:
            last_date = last_amount = ""
        currency = _CURRENCY[country] if rand() < 0.97 else ""
        u = rand()
        if u < 0.12:
            tz = ""
        elif u < 0.15:
            tz = _TZ_ABBREVIATIONS.get(tz, tz)
        notes = _NOTES[int(rand() * len(_NOTES))] if rand() < 0.12 else ""
        rows.append(
            [
                f"PME-{next_id:06d}",
                name,
                phone,
                email,
                balance,
                currency,
                _pick_date(fmt(dpd), rand()),
                last_date,
                last_amount,
                tz,
                state,
                country,
                consents[2 * i],
                consents[2 * i + 1],
                status,
                notes,
                "",
                "",
            ]
        )

    defects: dict[int, str] = {}
    n_bad = round(n * bad_row_ratio)
    if n_bad and n > 1:
        for row_index in sorted(rng.sample(range(2, n + 1), min(n_bad, n - 1))):
            kind = DEFECT_KINDS[rng.randrange(len(DEFECT_KINDS))]
            row = rows[row_index]
            if kind == "missing_account_id":
                row[0] = "" if rng.random() < 0.8 else " "
            elif kind == "bad_balance":
                row[4] = _BAD_BALANCES[rng.randrange(len(_BAD_BALANCES))]
            elif kind == "duplicate_account_id":
                earlier = rng.randrange(1, row_index)
                while earlier in defects:
                    earlier = rng.randrange(1, row_index)
                row[0] = rows[earlier][0]
            elif kind == "bad_date":
                row[6] = _BAD_DATES[rng.randrange(len(_BAD_DATES))]
            else:
                row[2] = _invalid_phone(rng)
            defects[row_index] = kind
    return DemoSheet(rows=rows, defects=defects)


_INSTALMENTS = (0.1, 0.2, 0.25, 0.5, 1.0)


def generate_pme_rows(n: int, *, seed: int = 7, today: date, bad_row_ratio: float = 0.02) -> list[list[str]]:
    """Header + ``n`` rows of the PME master sheet (see :func:`generate_pme_sheet` for the defects)."""
    return generate_pme_sheet(n, seed=seed, today=today, bad_row_ratio=bad_row_ratio).rows


def write_csv(path: str | Path, rows: Sequence[Sequence[str]]) -> None:
    """Write rows as UTF-8 CSV (RFC 4180 quoting, ``\\r\\n`` line ends, as Sheets exports).

    Raises ``OSError`` if the file cannot be written. Values are written verbatim: this is input data,
    not an export, so cells like ``+1 415-555-0132`` are not formula-escaped.
    """
    with Path(path).open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows)


def load_into_emulator(
    base_url: str,
    spreadsheet_id: str,
    rows: Sequence[Sequence[str]],
    sheet_title: str = "Accounts",
    *,
    title: str = "PME Master Sheet",
    timeout_s: float = 60.0,
) -> None:
    """Create (or replace) ``spreadsheet_id`` in the Sheets emulator with one sheet holding ``rows``.

    Uses the emulator's control endpoint ``POST /_emulator/spreadsheets`` (not the Sheets API, so no
    quota is spent). Raises ``httpx.HTTPStatusError`` if the emulator rejects the sheet and
    ``httpx.TransportError`` (``ConnectError``, ``TimeoutException``) if it cannot be reached.
    """
    body = {
        "spreadsheet_id": spreadsheet_id,
        "title": title,
        "sheets": {sheet_title: [list(r) for r in rows]},
    }
    with httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s) as client:
        client.post("/_emulator/spreadsheets", json=body).raise_for_status()
