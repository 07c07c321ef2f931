"""What a person should change in the sheet for each reject reason (shown next to every reject by
`GET /ingest/rejects` as `fix`, and by the console's Ingest page).

Kept next to the reasons: `tests/console_ops/test_ingest_page.py` reads every reason this package (and the
payment webhooks) can give and fails when one has no fix here. Patterns match the start of a reason (reasons
carry values, e.g. "more than 2 decimal places for USD"); `{column}` is the rejected column's header.
"""

from __future__ import annotations

import re

FIXES: tuple[tuple[str, str], ...] = (
    # required cells and identity
    (r"Account ID is required", "Type the account's ID in the Account ID cell (every row needs one)."),
    (r"Account ID is longer than 64", "Shorten the Account ID to 64 characters or fewer."),
    (
        r"duplicate Account ID",
        "Give this row its own Account ID, or merge it into the row named in the reason and delete it.",
    ),
    (r"Customer Name is required", "Type the customer's name in the Customer Name cell."),
    (r"Balance is required", "Type the amount owed in the Balance cell (0 if the account is settled)."),
    (r"Due Date is required", "Type the date the payment was due in the Due Date cell, as YYYY-MM-DD."),
    # amounts and currency
    (r"currency must be", "Write the currency as a 3-letter ISO code (USD, EUR, GBP…) or leave it blank."),
    (r"amount is empty", "Type the amount in {column}, digits only (e.g. 1234.56)."),
    (r"not a number", "Write {column} as a plain number, e.g. 1234.56 — no words, no formulas."),
    (
        r"digit grouping is not valid",
        "Fix the thousands separators in {column}, or remove them (1234567.89).",
    ),
    (r"amount is implausibly large", "Check {column} for extra digits: the amount is far too large."),
    (r"more than .* decimal places", "Round {column} to the currency's decimal places (e.g. 2 for USD)."),
    # dates
    (r"year .* is out of range", "Fix the year in {column}: it must be a real year (e.g. 2025)."),
    (r"not a calendar date", "Fix {column}: that day does not exist (e.g. 2025-02-30); use YYYY-MM-DD."),
    (r"date is empty", "Type the date in {column} as YYYY-MM-DD."),
    (
        r"number is not a plausible spreadsheet date",
        "Format {column} as a date (Format → Number → Date) or type it as YYYY-MM-DD.",
    ),
    (r"not a recognised date", "Write {column} as YYYY-MM-DD (e.g. 2025-06-30)."),
    # flags, status, contact details, location
    (r"expected Y/N", "Write {column} as Y or N."),
    (
        r"expected yes/no or the opt-in date",
        "Write {column} as Y or N, or as the date the customer opted in (YYYY-MM-DD).",
    ),
    (r"status must be", "Set Status to one of Open, Paid, Promise, Dispute or Closed."),
    (r"not a valid email address", "Correct the email address in {column}, or clear the cell."),
    (r"phone number is too long", "Correct the phone number in {column}: too many digits."),
    (
        r"not a phone number",
        "Correct {column}: write the number with its country code, e.g. +1 415 555 0123.",
    ),
    (
        r"not a valid phone number for region",
        "Correct {column}, or add the country code (+…) if the number is from another country.",
    ),
    (r"country must be", "Write the country as a 2-letter code (US, CA, GB…)."),
    (r"state is too long", "Write the state or province as its short code (e.g. CA, NY, ON)."),
    (r"not an IANA time zone", "Write the time zone as a name like America/Chicago, or clear the cell."),
    # payment webhooks (source "payment"): fix the sheet, or the payment's metadata at the provider
    (
        r"unknown account",
        "Add the account to the sheet (or correct the Account ID in the payment's metadata); the payment is"
        " applied at the next run.",
    ),
    (
        r"currency differs from the account",
        "Check the account's Currency in the sheet against the payment's currency; refund or re-enter it.",
    ),
)

_COMPILED = tuple((re.compile(pattern), fix) for pattern, fix in FIXES)


def fix_for(reason: str, column: str | None = None) -> str | None:
    """The one-line instruction for a reject `reason` (None if there is none: a test catches that)."""
    for pattern, fix in _COMPILED:
        if pattern.match(reason):
            return fix.replace("{column}", column or "the cell")
    return None
