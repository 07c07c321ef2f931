"""Golden tricky rows (exact expected normalisation or reject column per row), time-zone derivation from
phone / address / country, configurable column mapping, and a 10,000-row fuzzed sheet in which every row
ends accepted or rejected with a reason and none is lost."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

import pytest
from arrears_ingest.validation import (
    SheetFormatError,
    ValidationConfig,
    column_aliases,
    validate_sheet,
)
from arrears_shared.events import AccountStatus

from .sheetdata import HEADER, account_row

US = ValidationConfig()

# (overrides of a good row, expected fields of the accepted row) -- exact normalisation
ACCEPTED: list[tuple[str, dict[str, str], dict[str, Any]]] = [
    ("accounting negative", {"Balance": "(120.00)"}, {"balance_minor": -12000}),
    ("EU grouping", {"Balance": "1.234,50"}, {"balance_minor": 123450}),
    ("space grouping + NBSP", {"Balance": "\u00a01 234,50 "}, {"balance_minor": 123450}),
    ("code prefix", {"Balance": "USD 10"}, {"balance_minor": 1000}),
    (
        "yen has no minor unit",
        {"Balance": "¥1,200", "Currency": "jpy"},
        {"balance_minor": 1200, "currency": "JPY"},
    ),
    ("dinar has three", {"Balance": "1.5", "Currency": "KWD"}, {"balance_minor": 1500}),
    ("Excel serial date", {"Due Date": "45678"}, {"due_date": date(2025, 1, 21)}),
    ("month name", {"Due Date": "Mar 5, 2025"}, {"due_date": date(2025, 3, 5)}),
    ("day > 12 decides", {"Due Date": "25/03/2025"}, {"due_date": date(2025, 3, 25)}),
    ("dotted is day-first", {"Due Date": "05.03.2025"}, {"due_date": date(2025, 3, 5)}),
    ("ISO with time", {"Due Date": "2025-03-05T10:00:00Z"}, {"due_date": date(2025, 3, 5)}),
    ("BOM in id", {"Account ID": "\ufeffACC-9"}, {"account_id": "ACC-9"}),
    ("mailto + domain case", {"Email": "mailto:Jo.Doe@Example.COM"}, {"email": "Jo.Doe@example.com"}),
    ("status synonyms", {"Status": "Paid in full"}, {"status": AccountStatus.PAID}),
    ("status ptp", {"Status": "PTP"}, {"status": AccountStatus.PROMISE}),
    (
        "bad phone keeps the row, SMS off",
        {"Phone": "555-CALL-NOW-PLEASE-12345"},
        {"phone": None, "sms_consent": False, "email_consent": True},
    ),
    ("bad email keeps the row, email off", {"Email": "a@@b"}, {"email": None, "email_consent": False}),
    (
        "consent per channel",
        {"SMS Consent": "N", "Email Consent": "✓"},
        {"sms_consent": False, "email_consent": True},
    ),
    (
        "UK number with country",
        {"Phone": "020 7946 0958", "Country": "UK", "State": ""},
        {"phone": "+442079460958", "country": "GB", "timezone": "Europe/London", "timezone_source": "phone"},
    ),
    (
        "zone from address when no phone",
        {"Phone": "", "State": "", "Address": "1 Main St, Denver, CO 80202"},
        {"timezone": "America/Denver", "timezone_source": "address", "region": "CO"},
    ),
    (
        "zone from a single-zone country",
        {"Phone": "", "State": "", "Country": "India"},
        {"timezone": "Asia/Kolkata", "timezone_source": "country", "country": "IN"},
    ),
    (
        "explicit zone wins",
        {"Time Zone": "europe/dublin", "Phone": "(212) 555-0100"},
        {"timezone": "Europe/Dublin", "timezone_source": "column"},
    ),
    ("formula-looking note is just text", {"Notes": "=SUM(A1:A9)"}, {"notes": "=SUM(A1:A9)"}),
]

# (overrides, the column each reject names)
REJECTED: list[tuple[str, dict[str, str], set[str]]] = [
    ("scientific notation", {"Balance": "1e5"}, {"Balance"}),
    ("formula balance", {"Balance": "=A1*2"}, {"Balance"}),
    ("Feb 30", {"Due Date": "02/30/2025"}, {"Due Date"}),
    ("empty required", {"Customer Name": "  ", "Due Date": ""}, {"Customer Name", "Due Date"}),
    ("three decimals in USD", {"Balance": "10.005"}, {"Balance"}),
    ("bad currency", {"Currency": "dollars"}, {"Currency"}),
    ("unknown status", {"Status": "maybe"}, {"Status"}),
    ("unreadable last payment", {"Last Payment Amount": "some"}, {"Last Payment Amount"}),
    ("id too long", {"Account ID": "X" * 65}, {"Account ID"}),
]


@pytest.mark.parametrize(("name", "overrides", "expected"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_golden_accepted(name: str, overrides: dict[str, str], expected: dict[str, Any]) -> None:
    result = validate_sheet([HEADER, account_row(7, **overrides)], US)
    assert not result.rejections, result.rejections
    (row,) = result.accepted
    assert {k: getattr(row, k) for k in expected} == expected


@pytest.mark.parametrize(("name", "overrides", "columns"), REJECTED, ids=[r[0] for r in REJECTED])
def test_golden_rejected(name: str, overrides: dict[str, str], columns: set[str]) -> None:
    result = validate_sheet([HEADER, account_row(7, **overrides)], US)
    assert not result.accepted and result.rejected_rows == 1
    assert {r.column for r in result.rejections} == columns
    assert all(r.reason and r.row_number == 2 for r in result.rejections)


def test_unknown_zone_is_flagged_not_guessed() -> None:
    result = validate_sheet([HEADER, account_row(1, Phone="", State="TX", Country="US")], US)
    (row,) = result.accepted
    assert row.timezone is None
    assert any(w.column == "Time Zone" and "unknown" in w.reason for w in row.warnings)


def test_configurable_column_mapping() -> None:
    header = ["Acct #", "Debtor", "Amount Owed", "Pay By", "CELL"]
    cfg = ValidationConfig(
        aliases=column_aliases(
            {
                "Acct #": "Account ID",
                "debtor": "customer name",
                "Amount Owed": "Balance",
                "pay by": "Due Date",
            }
        )
    )
    result = validate_sheet([header, ["A-1", "Ann", "$5.00", "2025-01-31", "(415) 555-0100"]], cfg)
    (row,) = result.accepted
    assert (row.account_id, row.customer_name, row.balance_minor) == ("A-1", "Ann", 500)
    assert result.unknown_columns == ("CELL",)  # not mapped: reported, not guessed
    with pytest.raises(SheetFormatError):
        validate_sheet([header, ["A-1"]], US)  # without the map the required columns are missing
    with pytest.raises(ValueError, match="target must be one of"):
        column_aliases({"Acct #": "Acct"})


# -- 10,000 fuzzed rows -------------------------------------------------------------------------------------

NASTY = [
    "",
    " ",
    "\u00a0",
    '=HYPERLINK("http://x")',
    "+1",
    "-",
    "@@",
    "NaN",
    "inf",
    "1e308",
    "9" * 40,
    "(",
    "$",
    "1,2,3",
    "٣٤٥",  # Arabic-Indic digits
    "１２３",  # full-width digits
    "12/13/14",
    "00/00/0000",
    "2025-02-29",
    "99999999",
    "\x00\x01\x02",
    "\u202e\u202dabc",
    "😀" * 10,
    "null",
    "None",
    "TRUE",
    "x" * 5000,
    "Robert'); DROP TABLE students;--",
    "\t\r\n",
]


def fuzzed_sheet(n: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    rows = [HEADER]
    for i in range(1, n + 1):
        row = account_row(i)
        for _ in range(rng.choice((0, 0, 0, 1, 2, 5))):
            col = rng.randrange(len(HEADER))
            row[col] = rng.choice(
                (
                    rng.choice(NASTY),
                    "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(12))),
                    str(rng.uniform(-1e6, 1e6)),
                )
            )
        if rng.random() < 0.02:  # duplicate id of an earlier row
            row[0] = f"ACC-{rng.randrange(1, i + 1):06d}"
        if rng.random() < 0.01:  # ragged rows, as exports produce
            row = row[: rng.randrange(len(HEADER))]
        rows.append(row)
    return rows


@pytest.mark.parametrize("order", ["US", "EU"])
def test_10k_fuzzed_rows_every_row_accounted_for(order: str) -> None:
    values = fuzzed_sheet(10_000, seed=20250 + len(order))
    result = validate_sheet(values, ValidationConfig(date_order=order))  # type: ignore[arg-type]
    accepted = {r.row_number for r in result.accepted}
    rejected = {r.row_number for r in result.rejections}
    assert not accepted & rejected
    assert all(r.reason and r.row_number >= 2 for r in result.rejections)
    assert len(rejected) == result.rejected_rows
    blank = {
        n for n, row in enumerate(values[1:], start=2) if not any(str(c).strip() for c in row[: len(HEADER)])
    }
    assert len(blank) == result.blank_rows
    # none lost: every data row is accepted, rejected (with a reason) or blank
    assert accepted | rejected | blank == set(range(2, len(values) + 1))
    assert len(result.accepted) > 7_000 and result.rejected_rows > 300  # the fuzz does bite
    for row in result.accepted:
        assert row.account_id and len(row.account_id) <= 64 and row.customer_name
        assert row.phone is None or row.phone.startswith("+")
        assert not row.sms_consent or row.phone is not None
        assert not row.email_consent or row.email is not None
        assert len(row.content_hash) == 64
