"""Exports cannot carry a live formula, whatever the data says (OWASP CSV injection)."""

from __future__ import annotations

import csv
import io
from datetime import date

from arrears_console.readmodels.models import AgingReport, AgingRow, CurrencyTotal
from arrears_console.web.pages.aging import xlsx_bytes
from arrears_shared.spreadsheet import FORMULA_PREFIXES, cell_safe, csv_text
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import load_workbook

DANGEROUS = [
    "=1+1",
    '=HYPERLINK("http://evil","x")',
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1)",
    "\t=1",
    "\r=1",
]


@given(st.text(max_size=40))
def test_no_text_cell_starts_like_a_formula(value: str) -> None:
    safe = cell_safe(value)
    assert not safe.startswith(FORMULA_PREFIXES)
    assert safe == value or safe == "'" + value


def test_csv_keeps_numbers_and_neutralises_text() -> None:
    text = csv_text(["name", "amount"], [[d, -5] for d in DANGEROUS])
    rows = list(csv.reader(io.StringIO(text)))
    assert [r[0] for r in rows[1:]] == ["'" + d for d in DANGEROUS]
    assert all(r[1] == "-5" for r in rows[1:])  # a number stays a number


def test_xlsx_cells_are_text_never_formulas() -> None:
    rows = [
        AgingRow(bucket=d, currency="USD", accounts=1, balance_minor=100, reporting_minor=100)
        for d in DANGEROUS
    ]
    report = AgingReport(
        as_of=date(2026, 12, 4),
        buckets=DANGEROUS,
        rows=rows,
        reporting_currency="USD",
        rates_as_of=date(2026, 12, 1),
        currencies=[CurrencyTotal(currency="USD", accounts=7, balance_minor=700, reporting_minor=700)],
        reporting_by_bucket={},
        reporting_total_minor=700,
        unpriced_currencies=[],
    )
    wb = load_workbook(io.BytesIO(xlsx_bytes(report)))
    cells = [c for row in wb.active.iter_rows() for c in row]
    assert all(c.data_type != "f" for c in cells)
    texts = [c.value for c in cells if isinstance(c.value, str)]
    assert not any(t.startswith(FORMULA_PREFIXES) for t in texts)
    assert "'=1+1" in texts
    assert [c.value for c in wb.active["E"][1:]] == [100] * len(DANGEROUS)  # numbers stay numbers
