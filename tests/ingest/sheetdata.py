"""Builders of PME master sheet values for the ingest tests."""

from __future__ import annotations

from arrears_ingest.validation import ALL_COLUMNS

HEADER = [c.value for c in ALL_COLUMNS]
AREA_CODES = ("415", "212", "312", "303", "206", "617")


def account_row(i: int, **overrides: str) -> list[str]:
    row = {
        "Account ID": f"ACC-{i:06d}",
        "Customer Name": f"Customer {i}",
        "Phone": f"({AREA_CODES[i % len(AREA_CODES)]}) 555-{i % 10000:04d}",
        "Email": f"customer{i}@example.com",
        "Balance": f"${(i % 5000) + 10:,}.{i % 100:02d}",
        "Currency": "USD",
        "Due Date": f"{(i % 12) + 1:02d}/15/2025",
        "Last Payment Date": "2025-01-02" if i % 3 == 0 else "",
        "Last Payment Amount": "25.00" if i % 3 == 0 else "",
        "Time Zone": "",
        "State": "CA",
        "Address": "",
        "Country": "US",
        "SMS Consent": "Y",
        "Email Consent": "yes",
        "Status": "Open",
        "Notes": "",
        "Arrears Status": "",
        "Arrears Reason": "",
    }
    row.update(overrides)
    return [row[c] for c in HEADER]


def sheet(n: int, start: int = 1) -> list[list[str]]:
    return [HEADER, *(account_row(i) for i in range(start, start + n))]
