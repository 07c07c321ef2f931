"""Row validation: sheet values -> normalised `AccountRow`s or `Rejection`s.

Policy (chosen to avoid false-positive rejects, seed 001):
- a row is rejected only when it cannot be dunned correctly: a required column (Account ID, Customer Name,
  Balance, Due Date) is missing or unparsable, the currency or an unknown Status is invalid, the account id
  repeats an earlier row, or a non-empty Last Payment Amount/Date cannot be read;
- a bad contact detail never rejects the row: an invalid phone becomes None (SMS disabled), an invalid
  email becomes None (email disabled); a bad consent flag reads as "no consent"; an unknown time zone or
  country is dropped. Each of these is kept as a warning on the row.
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
from .columns import ALL_COLUMNS, Col, HeaderMap, SheetFormatError, map_header

# Bump when validation rules change so unchanged sheet rows are validated again.
VALIDATOR_VERSION = "2"

TimezoneSource = Literal["column", "phone", "state", "address", "country"]


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
    _content_hash: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        # computed once: the diff, the snapshot write and the event all need it
        object.__setattr__(self, "_content_hash", _row_hash(self))

    def hashed_fields(self) -> dict[str, Any]:
        """The fields that travel in `account-changed`; their hash decides whether the account changed."""
        return {
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


# `json.dumps(..., sort_keys=True, separators=(",", ":"))`, built once instead of per call
_HASH_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def content_hash(account_id: str, fields: dict[str, Any]) -> str:
    """sha256 of the account id and its `HASHED_KEYS` fields (JSON form, as in the snapshot's `data`)."""
    return _hash_exact(account_id, {k: fields.get(k) for k in HASHED_KEYS})


def _hash_exact(account_id: str, fields: dict[str, Any]) -> str:
    """`content_hash` of a dict that holds exactly the `HASHED_KEYS`."""
    return hashlib.sha256(_HASH_JSON([account_id, fields]).encode()).hexdigest()


_json_str = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]  # what _HASH_JSON uses


def _opt(s: str | None) -> str:
    return "null" if s is None else _json_str(s)


def _row_hash(r: AccountRow) -> str:
    """`_hash_exact(r.account_id, r.hashed_fields())`, its JSON text written out in sorted key order (the
    same text, tested; a third of the time of building, sorting and encoding a dict, once per row)."""
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


_MASK: dict[Col, Literal["phone", "email", "name", "plain"]] = {
    Col.PHONE: "phone",
    Col.EMAIL: "email",
    Col.CUSTOMER_NAME: "name",
}


# The write-back columns (Arrears Status / Arrears Reason, the last two) are our own output: writing them
# must not make the next run see the row as changed, so they are left out of the raw hash.
_RAW_CELLS = ALL_COLUMNS.index(Col.ARREARS_STATUS)


def raw_hash(cells: Sequence[str], fingerprint: str) -> str:
    """sha256 of the fingerprint followed by each cell, each preceded by a 0x1F separator."""
    payload = "\x1f".join([fingerprint, *map(str, cells)])
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def _text(value: str, limit: int) -> str | None:
    """`value` is a cleaned cell."""
    v = " ".join(value.split())
    return v[:limit] if v else None


def validate_row(
    cells: Sequence[str], row_number: int, cfg: ValidationConfig, rhash: str | None = None
) -> AccountRow | list[Rejection]:
    """`cells` are in `ALL_COLUMNS` order ("" for absent columns)."""
    # (`clean`, inlined for the usual printable text cell: 20 calls a row)
    c: dict[Col, str] = dict(
        zip(
            ALL_COLUMNS,
            [x.strip() if x.__class__ is str and x.isprintable() else p.clean(x) for x in cells],
            strict=True,
        )
    )
    errors: list[tuple[Col, str]] = []
    warnings: list[Issue] = []

    def fail(col: Col, reason: str) -> None:
        errors.append((col, reason))

    account_id = c[Col.ACCOUNT_ID]
    if not account_id:
        fail(Col.ACCOUNT_ID, "Account ID is required")
    elif len(account_id) > 64:
        fail(Col.ACCOUNT_ID, "Account ID is longer than 64 characters")

    name = _text(c[Col.CUSTOMER_NAME], 200)
    if not name:
        fail(Col.CUSTOMER_NAME, "Customer Name is required")

    currency = cfg.default_currency
    try:
        currency = p.parse_currency(c[Col.CURRENCY], cfg.default_currency)
    except p.CellError as e:
        fail(Col.CURRENCY, str(e))

    balance: int | None = None
    if not c[Col.BALANCE]:
        fail(Col.BALANCE, "Balance is required")
    else:
        try:
            balance = p.parse_amount(c[Col.BALANCE], currency)
        except p.CellError as e:
            fail(Col.BALANCE, str(e))

    due: date | None = None
    if not c[Col.DUE_DATE]:
        fail(Col.DUE_DATE, "Due Date is required")
    else:
        try:
            due = p.parse_date(c[Col.DUE_DATE], cfg.date_order)
        except p.CellError as e:
            fail(Col.DUE_DATE, str(e))

    last_date: date | None = None
    if c[Col.LAST_PAYMENT_DATE]:
        try:
            last_date = p.parse_date(c[Col.LAST_PAYMENT_DATE], cfg.date_order)
        except p.CellError as e:
            fail(Col.LAST_PAYMENT_DATE, str(e))

    last_amount: int | None = None
    if c[Col.LAST_PAYMENT_AMOUNT]:
        try:
            last_amount = p.parse_amount(c[Col.LAST_PAYMENT_AMOUNT], currency)
        except p.CellError as e:
            fail(Col.LAST_PAYMENT_AMOUNT, str(e))

    status = AccountStatus.OPEN
    try:
        status = p.parse_status(c[Col.STATUS])
    except p.CellError as e:
        fail(Col.STATUS, str(e))

    if errors:
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
    assert name is not None and balance is not None and due is not None

    # -- non-fatal columns: a bad value is dropped and noted as a warning ------------------------------------
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

    phone: str | None = None
    phone_zone: str | None = None
    try:
        number = p.parse_phone(c[Col.PHONE], country or cfg.default_region)
    except p.CellError as e:
        warnings.append(Issue(Col.PHONE.value, f"{e}; SMS disabled"))
        number = None
    if number is not None:
        phone = p.e164(number)
        phone_zone = p.zone_from_phone(number)
        if country is None:
            country = p.phone_region(number)

    email: str | None = None
    try:
        email = p.parse_email(c[Col.EMAIL])
    except p.CellError as e:
        warnings.append(Issue(Col.EMAIL.value, f"{e}; email disabled"))

    def flag(col: Col) -> bool:
        try:
            return p.parse_flag(c[col])
        except p.CellError as e:
            warnings.append(Issue(col.value, f"{e}; read as no consent"))
            return False

    sms_consent = flag(Col.SMS_CONSENT) and phone is not None
    email_consent = flag(Col.EMAIL_CONSENT) and email is not None

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

    return AccountRow(
        account_id=account_id,
        row_number=row_number,
        raw_hash=rhash or raw_hash(cells[:_RAW_CELLS], cfg.fingerprint()),
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
    )


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
        self._positions = self.header.positions()
        self._id_pos = self.header.index[Col.ACCOUNT_ID]
        self._fp = cfg.fingerprint()
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
                        value=p.mask(account_id, "plain"),
                        reason=f"duplicate Account ID: first seen on row {first_row[account_id]}",
                    )
                )
                continue
            if account_id:
                first_row[account_id] = row_number
            out.items.append(Candidate(row_number, account_id, cells, raw_hash(cells[:_RAW_CELLS], fp)))
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
                result = validate_row(item.cells, item.row_number, cfg, item.rhash)
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
    "AccountRow",
    "Candidate",
    "Prepared",
    "SheetValidator",
    "Issue",
    "KnownRaw",
    "Rejection",
    "SheetFormatError",
    "SheetResult",
    "ValidationConfig",
    "content_hash",
    "validate_row",
    "validate_sheet",
]
