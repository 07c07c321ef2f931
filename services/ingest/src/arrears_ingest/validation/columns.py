"""The PME master sheet's columns and how header cells map to them.

Headers are matched case-, space- and punctuation-insensitively ("account id", "AccountID", "Account_ID" all
name the same column), so a reformatted header row does not break ingest.

Besides the fixed columns (`Col`), every registered channel other than sms and email (whose address and
consent are the Phone / Email / SMS Consent / Email Consent columns) may have an address column and a
consent column of its own, named by its `ChannelSpec.sheet_columns` / `consent_columns` (WhatsApp).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from arrears_shared import channels
from arrears_shared.channels import ChannelSpec


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


# Channels read from the fixed columns: sms = Phone + SMS Consent, email = Email + Email Consent.
BUILTIN_CHANNELS: frozenset[str] = frozenset({"sms", "email"})


def extra_channel_specs() -> tuple[ChannelSpec, ...]:
    """The registered channels whose columns are their own (not `Col`s), in registry order."""
    return tuple(s for s in channels.registered().values() if s.name not in BUILTIN_CHANNELS)


@dataclass(frozen=True, slots=True)
class ChannelColumns:
    """Where one extra channel's address and consent are in the sheet (a header index and the header as
    written, None = the sheet has no such column), and how to read them. Only channels with at least one
    column of their own get one; validation receives them with the row's cells (see `HeaderMap.positions`)."""

    name: str
    label: str
    address_kind: str  # "phone" | "email" (ChannelSpec.address_kind)
    opt_in: bool
    address_at: int | None
    address_header: str | None
    consent_at: int | None
    consent_header: str | None


@dataclass(frozen=True, slots=True)
class HeaderMap:
    """Index of each known column in the sheet's rows (None = column absent), and the extra channels'
    columns."""

    index: dict[Col, int]
    unknown: tuple[str, ...]
    channels: tuple[ChannelColumns, ...] = ()

    def positions(self) -> list[int | None]:
        """Where each cell a row is validated from is: the `ALL_COLUMNS`, then each extra channel's address
        and consent (only for a sheet that has channel columns: the common row stays as it was)."""
        fixed = [self.index.get(c) for c in ALL_COLUMNS]
        return fixed + [at for ch in self.channels for at in (ch.address_at, ch.consent_at)]


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


def map_header(
    header: Sequence[str],
    aliases: Sequence[tuple[str, Col]] = (),
    specs: Sequence[ChannelSpec] | None = None,
) -> HeaderMap:
    """Find each known column in the header row; `aliases` (from `column_aliases`) take precedence, and a
    fixed column wins over a channel column of the same name. `specs`: the extra channels (default: the
    registry's, `extra_channel_specs`)."""
    by_key = {**_BY_KEY, **dict(aliases)} if aliases else _BY_KEY
    extra = extra_channel_specs() if specs is None else tuple(specs)
    channel_keys = _channel_keys(extra, by_key)
    index: dict[Col, int] = {}
    unknown: list[str] = []
    for i, cell in enumerate(header):
        key = header_key(cell)
        col = by_key.get(key)
        if col is None:
            if str(cell).strip() and key not in channel_keys:
                unknown.append(str(cell).strip()[:64])
            continue
        if col in index:
            raise SheetFormatError(f"column {col.value!r} appears twice in the header row")
        index[col] = i
    missing = [c.value for c in REQUIRED_COLUMNS if c not in index]
    if missing:
        raise SheetFormatError(f"header row is missing required column(s): {', '.join(missing)}")
    return HeaderMap(index, tuple(unknown), _channel_columns(header, extra, channel_keys))


ChannelKey = tuple[int, bool]  # (index of the channel in the specs, True = address / False = consent column)


def _channel_keys(specs: Sequence[ChannelSpec], by_key: Mapping[str, Col]) -> dict[str, ChannelKey]:
    """Header key -> the channel column it names (the first channel declaring it; fixed columns excluded)."""
    out: dict[str, ChannelKey] = {}
    for n, spec in enumerate(specs):
        for names, is_address in ((spec.sheet_columns, True), (spec.consent_columns, False)):
            for name in names:
                key = header_key(name)
                if key and key not in by_key:
                    out.setdefault(key, (n, is_address))
    return out


def _channel_columns(
    header: Sequence[str], specs: Sequence[ChannelSpec], channel_keys: Mapping[str, ChannelKey]
) -> tuple[ChannelColumns, ...]:
    """Each extra channel with a column in the sheet: the first header naming its address / consent."""
    found: dict[ChannelKey, int] = {}
    for i, cell in enumerate(header):
        hit = channel_keys.get(header_key(cell))
        if hit is not None:
            found.setdefault(hit, i)
    out: list[ChannelColumns] = []
    for n, spec in enumerate(specs):
        address_at, consent_at = found.get((n, True)), found.get((n, False))
        if address_at is None and consent_at is None:
            continue
        out.append(
            ChannelColumns(
                name=spec.name,
                label=spec.label,
                address_kind=spec.address_kind,
                opt_in=spec.consent == "opt_in",
                address_at=address_at,
                address_header=_header_text(header, address_at),
                consent_at=consent_at,
                consent_header=_header_text(header, consent_at),
            )
        )
    return tuple(out)


def _header_text(header: Sequence[str], at: int | None) -> str | None:
    return None if at is None else str(header[at]).strip()[:64]


def check_writeback_headers(headers: Iterable[str], aliases: Sequence[tuple[str, Col]] = ()) -> None:
    """Headers Arrears writes besides Arrears Status / Reason (the contact facts) must not name a data
    column the sheet is read from (a fixed column or a channel's), nor each other. Raises `ValueError`
    naming the offender."""
    by_key = {**_BY_KEY, **dict(aliases)}
    channel_keys = _channel_keys(extra_channel_specs(), by_key)
    seen: set[str] = set()
    for h in headers:
        key = header_key(h)
        if not key:
            continue
        if key in by_key:
            raise ValueError(f"write-back column {h!r} is the sheet column {by_key[key].value!r}")
        if key in channel_keys:
            raise ValueError(f"write-back column {h!r} is a channel's sheet column")
        if key in seen:
            raise ValueError(f"write-back column {h!r} is given twice")
        seen.add(key)
