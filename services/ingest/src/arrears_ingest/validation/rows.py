"""Row validation: sheet values -> normalised `AccountRow`s or `Rejection`s.

Policy (chosen to avoid false-positive rejects):
- a row is rejected only when it cannot be dunned correctly: a required column (Account ID, Customer Name,
  Balance, Due Date) is missing or unparsable, the currency or an unknown Status is invalid, the account id
  repeats an earlier row, or a non-empty Last Payment Amount/Date cannot be read;
- a bad contact detail never rejects the row: an invalid phone becomes None (SMS disabled), an invalid
  email becomes None (email disabled), an invalid address in a channel's own column (WhatsApp) becomes None
  (that channel disabled); a bad consent flag reads as "no consent"; an unknown time zone or country is
  dropped. Each of these is kept as a warning on the row.
Row numbers are sheet row numbers (header = row 1). Fully blank rows are skipped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from arrears_shared.account_status import AccountStatus  # not .events: workers import no pydantic

from . import parse as p
from .columns import ALL_COLUMNS, ChannelColumns, Col, HeaderMap, SheetFormatError, map_header

# Bump when validation rules change so unchanged sheet rows are validated again.
VALIDATOR_VERSION = "2"

TimezoneSource = Literal["column", "phone", "state", "address", "country"]
# (channel, address, consent) of a registered channel other than sms / email, read from its own columns
ExtraContact = tuple[str, str | None, bool]


@dataclass(frozen=True, slots=True)
class ValidationConfig:
    default_region: str = "US"
    date_order: p.DateOrder = "US"
    default_currency: str = "USD"
    # (header key, column) pairs from `columns.column_aliases`; they only locate columns, so they are
    # not part of the fingerprint (raw hashes are over the canonical cells)
    aliases: tuple[tuple[str, Col], ...] = ()

    def fingerprint(self) -> str:
        return f"{VALIDATOR_VERSION}|{self.default_region}|{self.date_order}|{self.default_currency}"


@dataclass(frozen=True, slots=True)
class Issue:
    column: str
    reason: str


@dataclass(frozen=True, slots=True)
class Rejection:
    row_number: int
    account_id: str | None
    column: str | None
    value: str | None  # masked / truncated
    reason: str
    balance_minor: int | None = None
    currency: str | None = None


@dataclass(frozen=True)
class AccountRow:
    """One accepted, normalised sheet row."""

    account_id: str
    row_number: int
    raw_hash: str
    customer_name: str
    phone: str | None
    email: str | None
    balance_minor: int
    currency: str
    due_date: date
    last_payment_date: date | None
    last_payment_minor: int | None
    timezone: str | None
    timezone_source: TimezoneSource | None
    country: str | None
    region: str | None
    sms_consent: bool
    email_consent: bool
    status: AccountStatus
    notes: str | None
    arrears_status: str | None
    arrears_reason: str | None
    warnings: tuple[Issue, ...] = ()
    # The extra channels (WhatsApp...) whose own sheet columns say something other than `implied_contact`
    # (the row's Phone for a phone channel, no consent): empty for nearly every row, and then not hashed.
    extra_contacts: tuple[ExtraContact, ...] = ()
    _content_hash: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        # computed once: the diff, the snapshot write and the event all need it
        object.__setattr__(self, "_content_hash", _row_hash(self))

    def hashed_fields(self) -> dict[str, Any]:
        """The fields that travel in `account-changed`; their hash decides whether the account changed.
        `contacts` only when the row has `extra_contacts` (so every other row hashes as it always did)."""
        fields: dict[str, Any] = {
            "customer_name": self.customer_name,
            "phone": self.phone,
            "email": self.email,
            "balance_minor": self.balance_minor,
            "currency": self.currency,
            "due_date": self.due_date.isoformat(),
            "last_payment_date": self.last_payment_date.isoformat() if self.last_payment_date else None,
            "last_payment_minor": self.last_payment_minor,
            "timezone": self.timezone,
            "country": self.country,
            "region": self.region,
            "sms_consent": self.sms_consent,
            "email_consent": self.email_consent,
            "status": self.status.value,
        }
        if self.extra_contacts:
            fields["contacts"] = self.extra_contacts_data()
        return fields

    def extra_contacts_data(self) -> dict[str, dict[str, Any]]:
        """`extra_contacts` as stored and hashed: {channel: {"address": ..., "consent": ...}}."""
        return {name: {"address": a, "consent": c} for name, a, c in self.extra_contacts}

    @property
    def content_hash(self) -> str:
        return self._content_hash

    def to_data(self) -> dict[str, Any]:
        """JSON stored in the snapshot (enough to emit a `removed` event later)."""
        return {
            **self.hashed_fields(),
            "timezone_source": self.timezone_source,
            "notes": self.notes,
            "arrears_status": self.arrears_status,
            "arrears_reason": self.arrears_reason,
            "warnings": [{"column": w.column, "reason": w.reason} for w in self.warnings],
        }


HASHED_KEYS: tuple[str, ...] = (
    "customer_name",
    "phone",
    "email",
    "balance_minor",
    "currency",
    "due_date",
    "last_payment_date",
    "last_payment_minor",
    "timezone",
    "country",
    "region",
    "sms_consent",
    "email_consent",
    "status",
)
# hashed too, but only when present and non-empty (`AccountRow.extra_contacts_data`)
OPTIONAL_HASHED_KEY = "contacts"


# `json.dumps(..., sort_keys=True, separators=(",", ":"))`, built once instead of per call
_HASH_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def content_hash(account_id: str, fields: dict[str, Any]) -> str:
    """sha256 of the account id and its `HASHED_KEYS` fields, plus `contacts` when non-empty (JSON form, as
    in the snapshot's `data`)."""
    hashed = {k: fields.get(k) for k in HASHED_KEYS}
    if contacts := fields.get(OPTIONAL_HASHED_KEY):
        hashed[OPTIONAL_HASHED_KEY] = contacts
    return _hash_exact(account_id, hashed)


def _hash_exact(account_id: str, fields: dict[str, Any]) -> str:
    """`content_hash` of a dict that holds exactly the hashed keys (`contacts` only when non-empty)."""
    return hashlib.sha256(_HASH_JSON([account_id, fields]).encode()).hexdigest()


_json_str = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]  # what _HASH_JSON uses


def _opt(s: str | None) -> str:
    return "null" if s is None else _json_str(s)


def _row_hash(r: AccountRow) -> str:
    """`_hash_exact(r.account_id, r.hashed_fields())`, its JSON text written out in sorted key order (the
    same text, tested; a third of the time of building, sorting and encoding a dict, once per row). A row
    with `extra_contacts` (a sheet with channel columns of its own) takes the general path."""
    if r.extra_contacts:
        return _hash_exact(r.account_id, r.hashed_fields())
    last = r.last_payment_date
    minor = r.last_payment_minor
    text = (
        f'[{_json_str(r.account_id)},{{"balance_minor":{int.__repr__(r.balance_minor)},'
        f'"country":{_opt(r.country)},"currency":{_json_str(r.currency)},'
        f'"customer_name":{_json_str(r.customer_name)},"due_date":"{r.due_date.isoformat()}",'
        f'"email":{_opt(r.email)},"email_consent":{"true" if r.email_consent else "false"},'
        f'"last_payment_date":{_opt(last.isoformat() if last else None)},'
        f'"last_payment_minor":{"null" if minor is None else int.__repr__(minor)},'
        f'"phone":{_opt(r.phone)},"region":{_opt(r.region)},'
        f'"sms_consent":{"true" if r.sms_consent else "false"},"status":{_json_str(r.status.value)},'
        f'"timezone":{_opt(r.timezone)}}}]'
    )
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(slots=True)
class SheetResult:
    accepted: list[AccountRow] = field(default_factory=list)
    # rows whose raw cells equal the snapshot's (same validator settings): (account_id, row_number)
    unchanged: list[tuple[str, int]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    rejected_rows: int = 0
    blank_rows: int = 0
    unknown_columns: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return len(self.accepted) + len(self.unchanged) + self.rejected_rows

    @property
    def warnings(self) -> int:
        return sum(len(a.warnings) for a in self.accepted)


# How a rejected cell is shown (parse.mask); any other column is "plain" (structured: embedded PII masked)
_MASK: dict[Col, p.MaskKind] = {
    Col.ACCOUNT_ID: "id",
    Col.PHONE: "phone",
    Col.EMAIL: "email",
    Col.CUSTOMER_NAME: "name",
    Col.ADDRESS: "text",
    Col.NOTES: "text",
    Col.ARREARS_REASON: "text",
}


# The write-back columns (Arrears Status / Arrears Reason, the last two) are our own output: writing them
# must not make the next run see the row as changed, so they are left out of the raw hash.
_RAW_CELLS = ALL_COLUMNS.index(Col.ARREARS_STATUS)
# A row's cells: `ALL_COLUMNS`, then (only in a sheet with channel columns) each extra channel's two.
_FIXED_CELLS = len(ALL_COLUMNS)


def raw_hash(cells: Sequence[str], fingerprint: str) -> str:
    """sha256 of the fingerprint followed by each cell, each preceded by a 0x1F separator."""
    payload = "\x1f".join([fingerprint, *map(str, cells)])
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def row_raw_hash(cells: Sequence[str], fingerprint: str) -> str:
    """`raw_hash` of a row's cells without the write-back ones; the extra channels' cells (after them)
    count, so a sheet without channel columns hashes its rows as it always did."""
    if len(cells) == _FIXED_CELLS:
        return raw_hash(cells[:_RAW_CELLS], fingerprint)
    return raw_hash([*cells[:_RAW_CELLS], *cells[_FIXED_CELLS:]], fingerprint)


def sheet_fingerprint(cfg: ValidationConfig, channels: Sequence[ChannelColumns]) -> str:
    """The raw hashes' fingerprint: the validator settings, and which extra channels the cells hold."""
    fp = cfg.fingerprint()
    return f"{fp}|channels={','.join(ch.name for ch in channels)}" if channels else fp


class _Errors(list[tuple[Col, str]]):
    """(column, reason) of each problem that rejects a row, in column order."""

    def fail(self, col: Col, reason: str) -> None:
        self.append((col, reason))


def _text(value: str, limit: int) -> str | None:
    """`value` is a cleaned cell."""
    v = " ".join(value.split())
    return v[:limit] if v else None


def validate_row(
    cells: Sequence[str],
    row_number: int,
    cfg: ValidationConfig,
    rhash: str | None = None,
    channels: Sequence[ChannelColumns] = (),
) -> AccountRow | list[Rejection]:
    """`cells` are in `ALL_COLUMNS` order ("" for absent columns), then the address and consent cells of
    each of `channels` (the sheet's extra channel columns, `HeaderMap.channels`).

    First the columns a row cannot be dunned without: every problem there is reported and rejects the row.
    Then the contact and location columns: a bad value is dropped and kept as a warning on the row. Each
    step appends to `errors` / `warnings` in column order, so the reasons come out in a stable order."""
    c = _clean_cells(cells[:_FIXED_CELLS] if channels else cells)

    errors = _Errors()
    account_id, name = _identity(c, errors)
    currency, balance = _balance(c, cfg, errors)
    due = _due_date(c, cfg, errors)
    last_date, last_amount = _last_payment(c, cfg, currency, errors)
    status = _status(c, errors)
    if errors:
        return _rejections(c, errors, row_number, account_id, balance, currency)
    assert name is not None and balance is not None and due is not None

    warnings: list[Issue] = []
    country, region = _country_and_state(c, warnings)
    phone, phone_zone, country = _phone(c, cfg, country, warnings)
    email = _email(c, warnings)
    sms_consent = _consent(c, Col.SMS_CONSENT, warnings) and phone is not None
    email_consent = _consent(c, Col.EMAIL_CONSENT, warnings) and email is not None
    zone, zone_source, region = _time_zone(c, cfg, country, region, phone_zone, warnings)
    extra = (
        _extra_contacts(cells[_FIXED_CELLS:], channels, phone, country or cfg.default_region, cfg, warnings)
        if channels
        else ()
    )

    return AccountRow(
        account_id=account_id,
        row_number=row_number,
        raw_hash=rhash or row_raw_hash(cells, sheet_fingerprint(cfg, channels)),
        customer_name=name,
        phone=phone,
        email=email,
        balance_minor=balance,
        currency=currency,
        due_date=due,
        last_payment_date=last_date,
        last_payment_minor=last_amount,
        timezone=zone,
        timezone_source=zone_source,
        country=country,
        region=region,
        sms_consent=sms_consent,
        email_consent=email_consent,
        status=status,
        notes=_text(c[Col.NOTES], 2000),
        arrears_status=_text(c[Col.ARREARS_STATUS], 200),
        arrears_reason=_text(c[Col.ARREARS_REASON], 500),
        warnings=tuple(warnings),
        extra_contacts=extra,
    )


def _clean_cells(cells: Sequence[str]) -> dict[Col, str]:
    """Each cell cleaned (`parse.clean`, inlined for the usual printable text cell: 20 calls a row)."""
    return dict(
        zip(
            ALL_COLUMNS,
            [x.strip() if x.__class__ is str and x.isprintable() else p.clean(x) for x in cells],
            strict=True,
        )
    )


# -- required columns: a problem rejects the row ---------------------------------------------------------------


def _identity(c: Mapping[Col, str], errors: _Errors) -> tuple[str, str | None]:
    """Account ID (required, at most 64 characters) and Customer Name (required)."""
    account_id = c[Col.ACCOUNT_ID]
    if not account_id:
        errors.fail(Col.ACCOUNT_ID, "Account ID is required")
    elif len(account_id) > 64:
        errors.fail(Col.ACCOUNT_ID, "Account ID is longer than 64 characters")
    name = _text(c[Col.CUSTOMER_NAME], 200)
    if not name:
        errors.fail(Col.CUSTOMER_NAME, "Customer Name is required")
    return account_id, name


def _balance(c: Mapping[Col, str], cfg: ValidationConfig, errors: _Errors) -> tuple[str, int | None]:
    """Currency (empty: the default; an invalid one keeps the default for reading the amounts) and Balance
    (required) in its minor units."""
    currency = cfg.default_currency
    try:
        currency = p.parse_currency(c[Col.CURRENCY], cfg.default_currency)
    except p.CellError as e:
        errors.fail(Col.CURRENCY, str(e))
    balance: int | None = None
    if not c[Col.BALANCE]:
        errors.fail(Col.BALANCE, "Balance is required")
    else:
        try:
            balance = p.parse_amount(c[Col.BALANCE], currency)
        except p.CellError as e:
            errors.fail(Col.BALANCE, str(e))
    return currency, balance


def _due_date(c: Mapping[Col, str], cfg: ValidationConfig, errors: _Errors) -> date | None:
    if not c[Col.DUE_DATE]:
        errors.fail(Col.DUE_DATE, "Due Date is required")
        return None
    try:
        return p.parse_date(c[Col.DUE_DATE], cfg.date_order)
    except p.CellError as e:
        errors.fail(Col.DUE_DATE, str(e))
        return None


def _last_payment(
    c: Mapping[Col, str], cfg: ValidationConfig, currency: str, errors: _Errors
) -> tuple[date | None, int | None]:
    """Last Payment Date and Amount: optional, but a non-empty one must be readable."""
    last_date: date | None = None
    if c[Col.LAST_PAYMENT_DATE]:
        try:
            last_date = p.parse_date(c[Col.LAST_PAYMENT_DATE], cfg.date_order)
        except p.CellError as e:
            errors.fail(Col.LAST_PAYMENT_DATE, str(e))
    last_amount: int | None = None
    if c[Col.LAST_PAYMENT_AMOUNT]:
        try:
            last_amount = p.parse_amount(c[Col.LAST_PAYMENT_AMOUNT], currency)
        except p.CellError as e:
            errors.fail(Col.LAST_PAYMENT_AMOUNT, str(e))
    return last_date, last_amount


def _status(c: Mapping[Col, str], errors: _Errors) -> AccountStatus:
    try:
        return p.parse_status(c[Col.STATUS])
    except p.CellError as e:
        errors.fail(Col.STATUS, str(e))
        return AccountStatus.OPEN


def _rejections(
    c: Mapping[Col, str],
    errors: _Errors,
    row_number: int,
    account_id: str,
    balance: int | None,
    currency: str,
) -> list[Rejection]:
    """One rejection per problem, with the offending value masked."""
    rid = account_id if account_id and len(account_id) <= 64 else None
    return [
        Rejection(
            row_number=row_number,
            account_id=rid,
            column=col.value,
            value=p.mask(c[col], _MASK.get(col, "plain")) or None,
            reason=reason,
            balance_minor=balance,
            currency=currency,
        )
        for col, reason in errors
    ]


# -- contact and location columns: a bad value is dropped and noted as a warning ------------------------------


def _country_and_state(c: Mapping[Col, str], warnings: list[Issue]) -> tuple[str | None, str | None]:
    country: str | None = None
    try:
        country = p.parse_country(c[Col.COUNTRY])
    except p.CellError as e:
        warnings.append(Issue(Col.COUNTRY.value, str(e)))
    region: str | None = None
    try:
        region = p.parse_state(c[Col.STATE])
    except p.CellError as e:
        warnings.append(Issue(Col.STATE.value, str(e)))
    return country, region


def _phone(
    c: Mapping[Col, str], cfg: ValidationConfig, country: str | None, warnings: list[Issue]
) -> tuple[str | None, str | None, str | None]:
    """(E.164 phone, the phone's time zone, country): a number read in the row's country (else the default
    region); the country, when the row has none, is the number's. An unreadable number disables SMS."""
    try:
        number = p.parse_phone(c[Col.PHONE], country or cfg.default_region)
    except p.CellError as e:
        warnings.append(Issue(Col.PHONE.value, f"{e}; SMS disabled"))
        return None, None, country
    if number is None:
        return None, None, country
    return (
        p.e164(number),
        p.zone_from_phone(number),
        country if country is not None else p.phone_region(number),
    )


def _email(c: Mapping[Col, str], warnings: list[Issue]) -> str | None:
    try:
        return p.parse_email(c[Col.EMAIL])
    except p.CellError as e:
        warnings.append(Issue(Col.EMAIL.value, f"{e}; email disabled"))
        return None


def _consent(c: Mapping[Col, str], col: Col, warnings: list[Issue]) -> bool:
    try:
        return p.parse_flag(c[col])
    except p.CellError as e:
        warnings.append(Issue(col.value, f"{e}; read as no consent"))
        return False


def _time_zone(
    c: Mapping[Col, str],
    cfg: ValidationConfig,
    country: str | None,
    region: str | None,
    phone_zone: str | None,
    warnings: list[Issue],
) -> tuple[str | None, TimezoneSource | None, str | None]:
    """(time zone, where it came from, region). The first that names one zone wins: the Time Zone column,
    the phone number, the State, a state found in the Address (which also fills an empty State), the
    country. None when they all span several zones (contact hours must then suit every candidate)."""
    zone: str | None = None
    zone_source: TimezoneSource | None = None
    try:
        zone = p.parse_zone(c[Col.TIME_ZONE])
        zone_source = "column" if zone else None
    except p.CellError as e:
        warnings.append(Issue(Col.TIME_ZONE.value, f"{e}; derived instead"))
    if zone is None and phone_zone is not None:
        zone, zone_source = phone_zone, "phone"
    if zone is None and region is not None:
        zone = p.zone_from_state(region, country or cfg.default_region)
        zone_source = "state" if zone else None
    if zone is None and (address_state := p.state_from_address(c[Col.ADDRESS])) is not None:
        if region is None:
            region = address_state
        zone = p.zone_from_state(address_state, country or cfg.default_region)
        zone_source = "address" if zone else None
    if zone is None:
        zone = p.zone_from_country(country)
        zone_source = "country" if zone else None
    if zone is None:
        warnings.append(
            Issue(
                Col.TIME_ZONE.value,
                "time zone unknown (no Time Zone, and phone/address/country span several zones); "
                "contact hours must suit every candidate zone",
            )
        )
    return zone, zone_source, region


# -- extra channels (WhatsApp...): their own address and consent columns ------------------------------------


def implied_contact(address_kind: str, phone: str | None) -> tuple[str | None, bool]:
    """(address, consent) of an extra channel the sheet says nothing of: a phone channel reaches the row's
    Phone (customers' WhatsApp is usually their mobile), without consent (an opt-in must be recorded)."""
    return (phone if address_kind == "phone" else None), False


def _extra_contacts(
    tail: Sequence[str],
    channels: Sequence[ChannelColumns],
    phone: str | None,
    region: str,
    cfg: ValidationConfig,
    warnings: list[Issue],
) -> tuple[ExtraContact, ...]:
    """The extra channels whose cells (`tail`: address, consent per channel) say something other than
    `implied_contact`. Consent only counts with an address."""
    out: list[ExtraContact] = []
    for i, ch in enumerate(channels):
        address = _channel_address(p.clean(tail[2 * i]), ch, phone, region, warnings)
        consent = _channel_consent(p.clean(tail[2 * i + 1]), ch, cfg, warnings) and address is not None
        if (address, consent) != implied_contact(ch.address_kind, phone):
            out.append((ch.name, address, consent))
    return tuple(out)


def _channel_address(
    cell: str, ch: ChannelColumns, phone: str | None, region: str, warnings: list[Issue]
) -> str | None:
    """The channel's own address, read like Phone / Email; an empty cell (or no column) means the implied
    one. An unreadable address disables the channel (a warning naming the column)."""
    if not cell:
        return implied_contact(ch.address_kind, phone)[0]
    try:
        if ch.address_kind == "email":
            return p.parse_email(cell)
        number = p.parse_phone(cell, region)
        return p.e164(number) if number is not None else None
    except p.CellError as e:
        warnings.append(Issue(ch.address_header or ch.label, f"{e}; {ch.label} disabled"))
        return None


def _channel_consent(cell: str, ch: ChannelColumns, cfg: ValidationConfig, warnings: list[Issue]) -> bool:
    """A yes/no flag, as the consent columns; for an opt-in channel also a date (the opt-in's) = yes.
    Empty (or no column) = no; unreadable = no, with a warning."""
    try:
        return p.parse_flag(cell)
    except p.CellError as e:
        reason = str(e)
    if ch.opt_in:
        try:
            p.parse_date(cell, cfg.date_order)
            return True
        except p.CellError:
            reason = "expected yes/no or the opt-in date"
    warnings.append(Issue(ch.consent_header or ch.label, f"{reason}; read as no consent"))
    return False


KnownRaw = Callable[[str, str], bool]


@dataclass(slots=True)
class Candidate:
    """A non-blank row whose account id was not seen before: to validate unless its cells are known."""

    row_number: int
    account_id: str
    cells: list[str]
    rhash: str


@dataclass(slots=True)
class Prepared:
    """One chunk of rows, in row order: candidates and duplicate-id rejections; plus blank rows."""

    items: list[Candidate | Rejection] = field(default_factory=list)
    blank_rows: int = 0

    @property
    def account_ids(self) -> list[str]:
        return [c.account_id for c in self.items if isinstance(c, Candidate) and c.account_id]


class SheetValidator:
    """Validates a worksheet chunk by chunk (header first), keeping what spans chunks: the header's column
    positions and the first row of every account id (a later row with the same id is a duplicate).

    `prepare` is cheap (cells, raw hashes, duplicates); `validate` parses the rows whose raw cells the
    snapshot does not already hold. Raises `SheetFormatError` when the header row is absent or lacks a
    required column: ingesting such a sheet would remove every account."""

    def __init__(self, header_row: Sequence[Any] | None, cfg: ValidationConfig) -> None:
        if not header_row or not any(p.clean(x) for x in header_row):
            raise SheetFormatError("the worksheet is empty (no header row)")
        self.cfg = cfg
        self.header: HeaderMap = map_header([str(x) for x in header_row], cfg.aliases)
        self.channels = self.header.channels
        self._positions = self.header.positions()
        self._id_pos = self.header.index[Col.ACCOUNT_ID]
        self._fp = sheet_fingerprint(cfg, self.channels)
        # account id -> the row that first holds it (the ids present in the sheet, for removals)
        self.first_row: dict[str, int] = {}

    def prepare(self, rows: Sequence[Sequence[Any]], first_row_number: int) -> Prepared:
        out = Prepared()
        positions, id_pos, fp, first_row = self._positions, self._id_pos, self._fp, self.first_row
        for offset, row in enumerate(rows):
            row_number = first_row_number + offset
            n = len(row)
            cells = [
                "" if pos is None or pos >= n or row[pos] is None else str(row[pos]) for pos in positions
            ]
            if not "".join(cells).strip():
                out.blank_rows += 1
                continue
            account_id = p.clean(row[id_pos]) if id_pos < n else ""
            if account_id and account_id in first_row:
                out.items.append(
                    Rejection(
                        row_number=row_number,
                        account_id=account_id if len(account_id) <= 64 else None,
                        column=Col.ACCOUNT_ID.value,
                        value=p.mask(account_id, "id"),
                        reason=f"duplicate Account ID: first seen on row {first_row[account_id]}",
                    )
                )
                continue
            if account_id:
                first_row[account_id] = row_number
            out.items.append(Candidate(row_number, account_id, cells, row_raw_hash(cells, fp)))
        return out

    @staticmethod
    def pending(prepared: Prepared, known_raw: KnownRaw | None = None) -> list[Candidate]:
        """The rows `validate` must parse: candidates whose raw cells the snapshot does not hold."""
        return [
            c
            for c in prepared.items
            if isinstance(c, Candidate)
            and not (known_raw is not None and c.account_id and known_raw(c.account_id, c.rhash))
        ]

    def validate(
        self,
        prepared: Prepared,
        known_raw: KnownRaw | None = None,
        parsed: Mapping[int, AccountRow | list[Rejection]] | None = None,
    ) -> SheetResult:
        """`known_raw(account_id, raw_hash)` returns True when the snapshot already holds this account from
        exactly these cells under the same settings; such rows are reported as unchanged without
        re-parsing (this keeps a 100k-row poll of a mostly unchanged sheet fast). `parsed` holds the
        `validate_row` results of the `pending` rows by row number, when they were computed elsewhere (a
        worker process); otherwise they are computed here."""
        out = SheetResult(unknown_columns=self.header.unknown, blank_rows=prepared.blank_rows)
        cfg = self.cfg
        for item in prepared.items:
            if isinstance(item, Rejection):  # duplicate account id
                out.rejected_rows += 1
                out.rejections.append(item)
                continue
            if known_raw is not None and item.account_id and known_raw(item.account_id, item.rhash):
                out.unchanged.append((item.account_id, item.row_number))
                continue
            if parsed is not None:
                result = parsed[item.row_number]
            else:
                result = validate_row(item.cells, item.row_number, cfg, item.rhash, self.channels)
            if isinstance(result, AccountRow):
                out.accepted.append(result)
            else:
                out.rejected_rows += 1
                out.rejections.extend(result)
        return out


def validate_sheet(
    values: Sequence[Sequence[Any]], cfg: ValidationConfig, known_raw: KnownRaw | None = None
) -> SheetResult:
    """Validate a whole worksheet (`get_all_values()` output, header first) in one go; see
    `SheetValidator` for the rules (runs validate chunk by chunk with the same class)."""
    validator = SheetValidator(values[0] if values else None, cfg)
    return validator.validate(validator.prepare(values[1:], 2), known_raw)


__all__ = [
    "HASHED_KEYS",
    "OPTIONAL_HASHED_KEY",
    "AccountRow",
    "ExtraContact",
    "Candidate",
    "Prepared",
    "SheetValidator",
    "Issue",
    "KnownRaw",
    "Rejection",
    "SheetResult",
    "ValidationConfig",
    "content_hash",
    "implied_contact",
    "validate_row",
    "validate_sheet",
]
