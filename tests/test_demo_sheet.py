"""The demo PME master sheet generator: shape, determinism, realism, deliberate defects, speed."""

from __future__ import annotations

import csv
import re
import time
from collections import Counter
from datetime import date, datetime
from pathlib import Path

import phonenumbers
import pytest
from arrears_cli.demo_sheet import (
    DEFECT_KINDS,
    PME_COLUMNS,
    generate_pme_rows,
    generate_pme_sheet,
    write_csv,
)

TODAY = date(2025, 3, 31)
HEADER = [
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
]
COL = {name: i for i, name in enumerate(HEADER)}


def parse_money(text: str) -> float:
    """How a reader of this sheet would read a balance (the test's own reading, not the ingest parser)."""
    t = text.strip()
    negative = t.startswith("(") and t.endswith(")") or t.startswith("-")
    t = re.sub(r"^(Rs\. |[$£₹])", "", t.strip("()-"))
    if not re.fullmatch(r"\d{1,3}(,\d{2,3})*(\.\d{1,2})?|\d+(\.\d{1,2})?", t):
        raise ValueError(text)
    value = float(t.replace(",", ""))
    return -value if negative else value


def parse_date(text: str) -> date:
    for fmt in ("%m/%d/%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(text)


@pytest.fixture(scope="module")
def sheet():
    return generate_pme_sheet(5000, seed=7, today=TODAY)


def test_header_and_shape(sheet) -> None:
    assert list(PME_COLUMNS) == HEADER
    assert sheet.rows[0] == HEADER
    assert len(sheet.rows) == 5001
    assert all(len(r) == len(HEADER) and all(isinstance(v, str) for v in r) for r in sheet.rows)
    assert all(r[COL["Arrears Status"]] == "" and r[COL["Arrears Reason"]] == "" for r in sheet.rows[1:])
    assert generate_pme_rows(0, today=TODAY) == [HEADER]


def test_deterministic_for_a_seed() -> None:
    a = generate_pme_rows(800, seed=3, today=TODAY)
    assert a == generate_pme_rows(800, seed=3, today=TODAY)
    assert a != generate_pme_rows(800, seed=4, today=TODAY)


def test_bad_rows_ratio_and_kinds(sheet) -> None:
    assert len(sheet.defects) == 100  # 2% of 5000
    assert set(Counter(sheet.defects.values())) == set(DEFECT_KINDS)
    assert len(generate_pme_sheet(1000, today=TODAY, bad_row_ratio=0.1).defects) == 100
    assert generate_pme_sheet(1000, today=TODAY, bad_row_ratio=0.0).defects == {}
    good_ids = Counter(r[0] for r in sheet.good_rows)
    for index, kind in sheet.defects.items():
        row = sheet.rows[index]
        if kind == "missing_account_id":
            assert row[0].strip() == ""
        elif kind == "duplicate_account_id":
            assert good_ids[row[0]] == 1  # the id of an earlier, good row
        elif kind == "bad_balance":
            with pytest.raises(ValueError):
                parse_money(row[COL["Balance"]])
        elif kind == "bad_date":
            with pytest.raises(ValueError):
                parse_date(row[COL["Due Date"]])
        else:
            try:
                number = phonenumbers.parse(row[COL["Phone"]], row[COL["Country"]])
                assert not phonenumbers.is_valid_number(number)
            except phonenumbers.NumberParseException:
                pass
    with pytest.raises(ValueError):
        generate_pme_rows(10, today=TODAY, bad_row_ratio=1.5)


def test_good_rows_are_realistic(sheet) -> None:
    good = sheet.good_rows
    assert len({r[0] for r in good}) == len(good)
    assert all(re.fullmatch(r"PME-\d{6}", r[0]) for r in good)
    for row in good:
        number = phonenumbers.parse(row[COL["Phone"]], row[COL["Country"]])
        assert phonenumbers.is_valid_number(number), row
        parse_money(row[COL["Balance"]])
        parse_date(row[COL["Due Date"]])
        if row[COL["Last Payment Date"]]:
            assert parse_date(row[COL["Last Payment Date"]]) <= TODAY
            parse_money(row[COL["Last Payment Amount"]])
        assert row[COL["Email"]] == "" or re.fullmatch(
            r"[a-z0-9._]+@[a-z.]*example\.(com|net|org|co\.uk)", row[COL["Email"]]
        )

    countries = Counter(r[COL["Country"]] for r in good)
    assert set(countries) == {"US", "CA", "GB", "IN"} and countries["US"] > 0.8 * len(good)
    assert Counter(r[COL["Status"]] for r in good).keys() == {"Open", "Paid", "Promise", "Dispute"}
    assert {"Y", "N", "yes", "TRUE"} <= {r[COL["SMS Consent"]] for r in good}
    assert any(r[COL["Time Zone"]] == "" for r in good)
    assert any(r[COL["Balance"]].startswith("(") for r in good)  # credits, accountant style
    phones = [r[COL["Phone"]] for r in good]
    assert any(p.startswith("(") for p in phones) and any(p.startswith("+1 ") for p in phones)
    assert any(re.fullmatch(r"\d{3}\.\d{3}\.\d{4}", p) for p in phones)
    dues = [r[COL["Due Date"]] for r in good]
    assert any("-" in d for d in dues) and sum("/" in d for d in dues) > 0.7 * len(dues)

    buckets = Counter()
    for row in good:
        dpd = (TODAY - parse_date(row[COL["Due Date"]])).days
        buckets[
            "current"
            if dpd <= 0
            else "1-30"
            if dpd <= 30
            else "31-60"
            if dpd <= 60
            else "61-90"
            if dpd <= 90
            else "91-120"
            if dpd <= 120
            else "120+"
        ] += 1
    assert set(buckets) == {"current", "1-30", "31-60", "61-90", "91-120", "120+"}
    assert min(buckets.values()) > 0.04 * len(good)


def test_write_csv_round_trip(tmp_path: Path, sheet) -> None:
    path = tmp_path / "pme.csv"
    write_csv(path, sheet.rows[:200])
    with path.open(newline="", encoding="utf-8") as fh:
        assert list(csv.reader(fh)) == sheet.rows[:200]


def test_100k_rows_under_3_seconds() -> None:
    generate_pme_rows(10, today=TODAY)  # warm imports (faker's name pools)
    wall, cpu = time.perf_counter(), time.process_time()
    rows = generate_pme_rows(100_000, today=TODAY)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(f"\n100k demo rows: wall {wall:.2f}s cpu {cpu:.2f}s")
    assert len(rows) == 100_001
    # CPU time: robust to other load on the machine (wall time is printed for the record)
    assert cpu < 3.0
