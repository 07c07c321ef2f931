"""The PME master sheet's columns and how header cells map to them.

Headers are matched case-, space- and punctuation-insensitively ("account id", "AccountID", "Account_ID" all
name the same column), so a reformatted header row does not break ingest.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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


def map_header(header: Sequence[str]) -> HeaderMap:
    index: dict[Col, int] = {}
    unknown: list[str] = []
    for i, cell in enumerate(header):
        col = _BY_KEY.get(header_key(cell))
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
