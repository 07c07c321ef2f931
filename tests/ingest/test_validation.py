"""Validator golden tests (tricky PME rows) and a property test: no cell content crashes the validator."""

from __future__ import annotations

from datetime import date

import pytest
from arrears_ingest.validation import (
    AccountRow,
    Rejection,
    SheetFormatError,
    ValidationConfig,
    validate_sheet,
)
from arrears_ingest.validation import parse as p
from arrears_ingest.validation import rows as rows_module
from arrears_ingest.validation.columns import Col
from arrears_shared.events import AccountStatus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .sheetdata import HEADER, account_row

US = ValidationConfig()
EU = ValidationConfig(date_order="EU")


def one(values_row: list[str], cfg: ValidationConfig = US) -> AccountRow | list[Rejection]:
    result = validate_sheet([HEADER, values_row], cfg)
    if result.accepted:
        return result.accepted[0]
    return result.rejections


@pytest.mark.parametrize(
    ("cell", "minor"),
    [
        ("$1,234.50", 123450),
        ("1234.5", 123450),
        ("1.234,50", 123450),
        ("(120.00)", -12000),
        ("1 234,50", 123450),
        ("USD 99", 9900),
        ("99 USD", 9900),
        ("12,5", 1250),
        ("1,234", 123400),
        ("1,234,567.89", 123456789),
        ("-5", -500),
        ("5-", -500),
        ("€0.07", 7),
    ],
)
def test_amounts(cell: str, minor: int) -> None:
    assert p.parse_amount(cell, "USD") == minor


@pytest.mark.parametrize("cell", ["abc", "1,2,3", "1.234", "12.345", "$", "1e5", "--5", "1 2", "9" * 20])
def test_bad_amounts(cell: str) -> None:
    with pytest.raises(p.CellError):
        p.parse_amount(cell, "USD")


def test_minor_units_follow_currency() -> None:
    assert p.parse_amount("1,500", "JPY") == 1500
    assert p.parse_amount("1.250", "KWD") == 1250
    with pytest.raises(p.CellError, match="0 decimal places for JPY"):
        p.parse_amount("10.5", "JPY")


@pytest.mark.parametrize(
    ("cell", "us", "eu"),
    [
        ("2025-03-04", date(2025, 3, 4), date(2025, 3, 4)),
        ("2025-03-04T10:00:00Z", date(2025, 3, 4), date(2025, 3, 4)),
        ("03/04/2025", date(2025, 3, 4), date(2025, 4, 3)),
        ("13/04/2025", date(2025, 4, 13), date(2025, 4, 13)),  # day > 12 decides
        ("04/13/2025", date(2025, 4, 13), date(2025, 4, 13)),
        ("04.03.2025", date(2025, 3, 4), date(2025, 3, 4)),  # dotted = day first
        ("3/4/25", date(2025, 3, 4), date(2025, 4, 3)),
        ("45720", date(2025, 3, 4), date(2025, 3, 4)),  # Excel serial
        ("45720.5", date(2025, 3, 4), date(2025, 3, 4)),
        ("Mar 4, 2025", date(2025, 3, 4), date(2025, 3, 4)),
        ("4 March 2025", date(2025, 3, 4), date(2025, 3, 4)),
        ("04-Mar-2025", date(2025, 3, 4), date(2025, 3, 4)),
    ],
)
def test_dates(cell: str, us: date, eu: date) -> None:
    assert p.parse_date(cell, "US") == us
    assert p.parse_date(cell, "EU") == eu


@pytest.mark.parametrize("cell", ["02/30/2025", "2025-13-01", "tomorrow", "0", "99/99/9999", "1/1/1800"])
def test_bad_dates(cell: str) -> None:
    with pytest.raises(p.CellError):
        p.parse_date(cell, "US")


def test_good_row_is_normalised() -> None:
    row = one(account_row(7, **{"Phone": "(415) 555-0107", "Balance": "$1,200.00", "Due Date": "03/05/2025"}))
    assert isinstance(row, AccountRow)
    assert row.phone == "+14155550107"
    assert row.balance_minor == 120000 and row.currency == "USD"
    assert row.due_date == date(2025, 3, 5)
    assert row.timezone == "America/Los_Angeles" and row.timezone_source == "phone"
    assert row.sms_consent and row.email_consent
    assert row.status is AccountStatus.OPEN
    assert row.row_number == 2 and row.warnings == ()


def test_invalid_phone_and_email_do_not_reject() -> None:
    row = one(account_row(1, Phone="555", Email="not-an-email", **{"SMS Consent": "Y"}))
    assert isinstance(row, AccountRow)
    assert row.phone is None and row.sms_consent is False
    assert row.email is None and row.email_consent is False
    assert {w.column for w in row.warnings} == {"Phone", "Email"}


def test_phone_region_from_country_column() -> None:
    row = one(account_row(1, Phone="07911 123456", Country="United Kingdom", State=""))
    assert isinstance(row, AccountRow)
    assert row.phone == "+447911123456" and row.country == "GB"


def test_time_zone_precedence() -> None:
    explicit = one(account_row(1, **{"Time Zone": "america/chicago"}))
    assert isinstance(explicit, AccountRow)
    assert (explicit.timezone, explicit.timezone_source) == ("America/Chicago", "column")
    # toll-free numbers span many zones -> fall back to the State table
    by_state = one(account_row(1, Phone="(800) 555-0100", State="New York"))
    assert isinstance(by_state, AccountRow)
    assert (by_state.timezone, by_state.timezone_source, by_state.region) == (
        "America/New_York",
        "state",
        "NY",
    )
    # Texas spans two zones: unknown rather than a guess
    unknown = one(account_row(1, Phone="", State="TX"))
    assert isinstance(unknown, AccountRow)
    assert unknown.timezone is None and unknown.timezone_source is None
    bad = one(account_row(1, **{"Time Zone": "Mars/Olympus", "Phone": "(212) 555-0100"}))
    assert isinstance(bad, AccountRow)
    assert bad.timezone == "America/New_York" and bad.warnings[0].column == "Time Zone"


@pytest.mark.parametrize(
    ("cell", "value"), [("Y", True), ("no", False), ("TRUE", True), ("0", False), ("", False)]
)
def test_consent_flags(cell: str, value: bool) -> None:
    row = one(account_row(1, **{"SMS Consent": cell}))
    assert isinstance(row, AccountRow) and row.sms_consent is value


def test_unreadable_consent_means_no_consent() -> None:
    row = one(account_row(1, **{"Email Consent": "maybe"}))
    assert isinstance(row, AccountRow) and row.email_consent is False
    assert row.warnings[0].column == "Email Consent"


@pytest.mark.parametrize(
    ("cell", "status"),
    [("Open", AccountStatus.OPEN), ("paid", AccountStatus.PAID), ("Promise to Pay", AccountStatus.PROMISE),
     ("DISPUTED", AccountStatus.DISPUTE), ("Closed", AccountStatus.CLOSED), ("", AccountStatus.OPEN)],
)  # fmt: skip
def test_status(cell: str, status: AccountStatus) -> None:
    row = one(account_row(1, Status=cell))
    assert isinstance(row, AccountRow) and row.status is status


def test_unknown_status_rejects() -> None:
    rej = one(account_row(1, Status="Frozen"))
    assert isinstance(rej, list) and rej[0].column == "Status"


def test_required_fields_each_named() -> None:
    rej = one(account_row(1, **{"Customer Name": " ", "Balance": "", "Due Date": "soon"}))
    assert isinstance(rej, list)
    assert {(r.column, r.row_number) for r in rej} == {("Customer Name", 2), ("Balance", 2), ("Due Date", 2)}
    assert all(r.account_id == "ACC-000001" and r.reason for r in rej)


def test_missing_account_id() -> None:
    rej = one(account_row(1, **{"Account ID": ""}))
    assert isinstance(rej, list) and rej[0].column == "Account ID" and rej[0].account_id is None


def test_duplicate_ids_reject_the_later_row_naming_the_first() -> None:
    result = validate_sheet([HEADER, account_row(1), account_row(2), account_row(1, Balance="5")], US)
    assert [a.row_number for a in result.accepted] == [2, 3]
    (dup,) = result.rejections
    assert dup.row_number == 4 and "row 2" in dup.reason and dup.account_id == "ACC-000001"


def test_rejected_values_are_masked() -> None:
    # a structured cell keeps its text for the sheet owner, but a phone number or email typed into it is masked
    rej = one(account_row(1, Balance="call 4155550123"))
    assert isinstance(rej, list) and rej[0].value == "call ••••••••23"
    rej = one(account_row(1, Balance="ask jane.doe@example.com or +44 20 7946 0958"))
    assert isinstance(rej, list) and rej[0].value is not None
    assert "jane" not in rej[0].value and "7946" not in rej[0].value and rej[0].value.startswith("ask j•••@")
    # dates, amounts and ids are not mistaken for numbers to mask
    assert p.mask("2024-13-45", "plain") == "2024-13-45" and p.mask("1,234,567.89", "plain") == "1,234,567.89"
    assert p.mask("4155550123", "id") == "4155550123"
    assert p.mask("(415) 555-0123", "phone").endswith("23") and "555" not in p.mask("(415) 555-0123", "phone")
    assert p.mask("jane.doe@example.com", "email").startswith("j•••@") and "jane" not in p.mask(
        "jane.doe@example.com", "email"
    )


def test_free_text_columns_are_masked_whole() -> None:
    """Notes and addresses are free text: a reject shows only their length (a name or number in them is not
    recognisable). They never reject a row today; the masking holds if they ever do."""
    assert p.mask("Jane Doe, 12 Main St, call 415 555 0123", "text") == "••• (39 characters)"
    assert rows_module._MASK[Col.NOTES] == "text" and rows_module._MASK[Col.ADDRESS] == "text"
    assert rows_module._MASK[Col.ACCOUNT_ID] == "id"
    errors = rows_module._Errors()
    errors.fail(Col.NOTES, "bad")
    (rej,) = rows_module._rejections({Col.NOTES: " Jane Doe owes  "}, errors, 2, "ACC-1", None, "USD")
    assert rej.value == "••• (13 characters)"


def test_bad_currency_rejects_and_default_applies() -> None:
    rej = one(account_row(1, Currency="dollars"))
    assert isinstance(rej, list) and rej[0].column == "Currency"
    row = one(account_row(1, Currency=""), ValidationConfig(default_currency="CAD"))
    assert isinstance(row, AccountRow) and row.currency == "CAD"


def test_headers_match_case_and_space_insensitively_in_any_order() -> None:
    header = [h.upper().replace(" ", "_") for h in reversed(HEADER)]
    values = [header, list(reversed(account_row(3)))]
    result = validate_sheet(values, US)
    assert result.accepted[0].account_id == "ACC-000003"


def test_missing_required_column_fails_the_sheet() -> None:
    header = [h for h in HEADER if h != "Balance"]
    with pytest.raises(SheetFormatError, match="Balance"):
        validate_sheet([header, ["x"] * len(header)], US)
    with pytest.raises(SheetFormatError):
        validate_sheet([], US)


def test_blank_rows_and_short_rows() -> None:
    result = validate_sheet(
        [HEADER, [], ["", " "], ["ACC-9", "Short Row", "", "", "10", "", "2025-01-01"]], US
    )
    assert result.blank_rows == 2
    assert result.accepted[0].row_number == 4 and result.accepted[0].balance_minor == 1000


def test_eu_date_order_setting() -> None:
    row = one(account_row(1, **{"Due Date": "03/05/2025"}), EU)
    assert isinstance(row, AccountRow) and row.due_date == date(2025, 5, 3)


def test_content_hash_ignores_row_position_and_notes() -> None:
    a = validate_sheet([HEADER, account_row(1)], US).accepted[0]
    b = validate_sheet([HEADER, account_row(2), account_row(1, Notes="called twice")], US).accepted[1]
    assert a.content_hash == b.content_hash and a.raw_hash != b.raw_hash
    c = validate_sheet([HEADER, account_row(1, Balance="$1.00")], US).accepted[0]
    assert c.content_hash != a.content_hash


cells = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "(1)", "1,2", "$", "45000", "13/13/2025", "+1", "@", "Y", "Open", "1.234,5"]),
    st.from_regex(r"[\d.,()$ -]{1,15}", fullmatch=True),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.lists(st.lists(cells, max_size=len(HEADER) + 2), max_size=6), order=st.sampled_from(["US", "EU"])
)
def test_no_cell_content_crashes_the_validator(rows: list[list[str]], order: str) -> None:
    cfg = ValidationConfig(date_order=order)  # type: ignore[arg-type]
    result = validate_sheet([HEADER, *rows], cfg)
    data_rows = [r for r in rows if any(str(c).strip() for c in r[: len(HEADER)])]
    # every row ends accepted or rejected with a reason (or blank)
    assert len(result.accepted) + result.rejected_rows + result.blank_rows == len(rows)
    assert len(result.accepted) + result.rejected_rows <= len(data_rows) + result.blank_rows
    assert all(r.reason for r in result.rejections)
    for a in result.accepted:
        a.to_data()
        assert len(a.content_hash) == 64


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_single_cell_parsers_only_raise_cell_error(cell: str) -> None:
    for fn in (
        lambda: p.parse_amount(cell, "USD"),
        lambda: p.parse_date(cell, "US"),
        lambda: p.parse_flag(cell),
        lambda: p.parse_status(cell),
        lambda: p.parse_email(cell),
        lambda: p.parse_phone(cell, "US"),
        lambda: p.parse_zone(cell),
        lambda: p.parse_country(cell),
        lambda: p.parse_state(cell),
    ):
        try:
            fn()
        except p.CellError:
            pass


# -- fast paths: the everyday shapes are read directly, and must read exactly as the general parsers do ------

_NANP_SHAPES = (
    "({a}) {e}-{l}",
    "{a}-{e}-{l}",
    "{a}.{e}.{l}",
    "{a}{e}{l}",
    "1-{a}-{e}-{l}",
    "1 ({a}) {e}-{l}",
    "1{a}{e}{l}",
    "+1 {a}-{e}-{l}",
    "+1{a}{e}{l}",
    "+1 ({a}) {e} {l}",
    "+1.{a}.{e}.{l}",
)
_REGIONS = ("US", "CA", "GB", "IN", "BS", "DO", "PR", "AU")


@settings(max_examples=400, deadline=None)
@given(
    st.integers(0, 999),
    st.integers(0, 999),
    st.integers(0, 9999),
    st.sampled_from(_NANP_SHAPES),
    st.sampled_from(_REGIONS),
)
def test_nanp_fast_path_reads_as_phonenumbers_does(
    area: int, exchange: int, line: int, shape: str, region: str
) -> None:
    import phonenumbers

    cell = shape.format(a=f"{area:03d}", e=f"{exchange:03d}", l=f"{line:04d}")
    fast = p.nanp_number(cell, region)
    if fast is None:
        return  # not a shape it takes: parsed by phonenumbers
    assert fast == phonenumbers.parse(cell, region)


def test_nanp_fast_path_leaves_other_shapes_to_phonenumbers() -> None:
    assert p.nanp_number("212-555-0100", "GB") is None  # no +1: the digits mean something else there
    assert p.nanp_number("+1 212-555-0100", "GB") is not None
    assert p.nanp_number("112-555-0100", "US") is None  # area codes never start with 0 or 1
    assert p.nanp_number("212-555-0100 x12", "US") is None  # extension
    assert p.nanp_number("+44 20 7946 0958", "US") is None
    assert p.nanp_number("２１２５５５０１００", "US") is None  # full-width digits: phonenumbers' job
    # and parse_phone still validates what the fast path built
    with pytest.raises(p.CellError):
        p.parse_phone("(212) 055-0100", "US")
    number = p.parse_phone("+1 (416) 555-0100", "US")
    assert number is not None and p.e164(number) == "+14165550100" and p.phone_region(number) == "CA"


@settings(max_examples=400, deadline=None)
@given(
    st.integers(0, 10**16),
    st.sampled_from(["", "0", "5", "50", "05", "500", "1234"]),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["USD", "JPY", "KWD"]),
)
def test_plain_amount_fast_path_reads_as_parse_decimal_does(
    whole: int, frac: str, grouped: bool, dollar: bool, currency: str
) -> None:
    cell = ("$" if dollar else "") + (f"{whole:,}" if grouped else str(whole)) + (f".{frac}" if frac else "")
    try:
        expected: int | str = p.to_minor(p.parse_decimal(cell), currency)
    except p.CellError as e:
        expected = str(e)
    try:
        got: int | str = p.parse_amount(cell, currency)
    except p.CellError as e:
        got = str(e)
    assert got == expected


@settings(max_examples=300, deadline=None)
@given(
    st.text(min_size=1, max_size=30),
    st.sampled_from(["", "2025-01-02"]),
    st.sampled_from(["", "12.50"]),
    st.sampled_from(["", "not an email", "a@example.com"]),
    st.sampled_from(["", "(212) 555-0123", "+44 7911 123456"]),
    st.sampled_from(["", "CA", "Ontario"]),
)
def test_row_content_hash_is_the_json_hash_of_its_fields(
    name: str, paid: str, amount: str, email: str, phone: str, state: str
) -> None:
    """The content hash (written out for speed) is the sha256 of the sorted, compact JSON of the account id
    and its hashed fields, as stored in every snapshot so far (a different text would make every account
    look changed)."""
    import hashlib
    import json

    values = {"Customer Name": name, "Last Payment Date": paid, "Last Payment Amount": amount}
    values |= {"Email": email, "Phone": phone, "State": state}
    row = one(account_row(3, **values))
    if isinstance(row, AccountRow):
        text = json.dumps([row.account_id, row.hashed_fields()], sort_keys=True, separators=(",", ":"))
        assert row.content_hash == hashlib.sha256(text.encode()).hexdigest()
