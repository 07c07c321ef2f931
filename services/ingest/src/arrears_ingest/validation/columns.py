"""The PME master sheet's columns and how header cells map to them.

Headers are matched case-, space- and punctuation-insensitively ("account id", "AccountID", "Account_ID" all
name the same column), so a reformatted header row does not break ingest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum


class Col(StrEnum):
    ACCOUNT_ID = "Account ID"
    CUSTOMER_NAME = "Customer Name"
    PHONE = "Phone"
    EMAIL = "Email"
    BALANCE = "Balance"
    CURRENCY = "Currency"
    DUE_DATE = "Due Date"
    LAST_PAYMENT_DATE = "Last Payment Date"
    LAST_PAYMENT_AMOUNT = "Last Payment Amount"
    TIME_ZONE = "Time Zone"
    STATE = "State"
    ADDRESS = "Address"
    COUNTRY = "Country"
    SMS_CONSENT = "SMS Consent"
    EMAIL_CONSENT = "Email Consent"
    STATUS = "Status"
    NOTES = "Notes"
    ARREARS_STATUS = "Arrears Status"
    ARREARS_REASON = "Arrears Reason"


ALL_COLUMNS: tuple[Col, ...] = tuple(Col)
REQUIRED_COLUMNS: tuple[Col, ...] = (Col.ACCOUNT_ID, Col.CUSTOMER_NAME, Col.BALANCE, Col.DUE_DATE)

_NON_ALNUM = re.compile(r"[^0-9a-z]+")

# Common alternative spellings seen in PME exports.
_ALIASES: dict[str, Col] = {
    "accountnumber": Col.ACCOUNT_ID,
    "accountno": Col.ACCOUNT_ID,
    "customer": Col.CUSTOMER_NAME,
    "name": Col.CUSTOMER_NAME,
    "phonenumber": Col.PHONE,
    "mobile": Col.PHONE,
    "emailaddress": Col.EMAIL,
    "timezone": Col.TIME_ZONE,
    "tz": Col.TIME_ZONE,
    "streetaddress": Col.ADDRESS,
    "mailingaddress": Col.ADDRESS,
    "province": Col.STATE,
    "region": Col.STATE,
    "smsoptin": Col.SMS_CONSENT,
    "emailoptin": Col.EMAIL_CONSENT,
}


def header_key(cell: str) -> str:
    return _NON_ALNUM.sub("", str(cell).casefold())


_BY_KEY: dict[str, Col] = {header_key(c.value): c for c in Col} | _ALIASES


class SheetFormatError(ValueError):
    """The sheet as a whole cannot be ingested (no header row, required column missing)."""


@dataclass(frozen=True, slots=True)
class HeaderMap:
    """Index of each known column in the sheet's rows (None = column absent)."""

    index: dict[Col, int]
    unknown: tuple[str, ...]

    def positions(self) -> list[int | None]:
        return [self.index.get(c) for c in ALL_COLUMNS]


def column_aliases(mapping: Mapping[str, str]) -> tuple[tuple[str, Col], ...]:
    """Operator-configured header names -> canonical columns (`ARREARS_INGEST_COLUMN_MAP`).

    Keys are sheet headers, values canonical column names (either side matched like headers).
    Raises `ValueError` naming an unknown canonical column."""
    out: list[tuple[str, Col]] = []
    for header, target in mapping.items():
        col = _BY_KEY.get(header_key(target))
        if col is None or not header_key(header):
            known = ", ".join(c.value for c in Col)
            raise ValueError(f"column map {header!r} -> {target!r}: target must be one of {known}")
        out.append((header_key(header), col))
    return tuple(out)


def map_header(header: Sequence[str], aliases: Sequence[tuple[str, Col]] = ()) -> HeaderMap:
    """Find each known column in the header row; `aliases` (from `column_aliases`) take precedence."""
    by_key = {**_BY_KEY, **dict(aliases)} if aliases else _BY_KEY
    index: dict[Col, int] = {}
    unknown: list[str] = []
    for i, cell in enumerate(header):
        col = by_key.get(header_key(cell))
        if col is None:
            if str(cell).strip():
                unknown.append(str(cell).strip()[:64])
            continue
        if col in index:
            raise SheetFormatError(f"column {col.value!r} appears twice in the header row")
        index[col] = i
    missing = [c.value for c in REQUIRED_COLUMNS if c not in index]
    if missing:
        raise SheetFormatError(f"header row is missing required column(s): {', '.join(missing)}")
    return HeaderMap(index, tuple(unknown))


def check_writeback_headers(headers: Iterable[str], aliases: Sequence[tuple[str, Col]] = ()) -> None:
    """Headers Arrears writes besides Arrears Status / Reason (the contact facts) must not name a data
    column the sheet is read from, nor each other. Raises `ValueError` naming the offender."""
    by_key = {**_BY_KEY, **dict(aliases)}
    seen: set[str] = set()
    for h in headers:
        key = header_key(h)
        if not key:
            continue
        if key in by_key:
            raise ValueError(f"write-back column {h!r} is the sheet column {by_key[key].value!r}")
        if key in seen:
            raise ValueError(f"write-back column {h!r} is given twice")
        seen.add(key)
