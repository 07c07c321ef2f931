"""Coverage-guided fuzzing (atheris) of the ingest service's sheet reading and row validation.

    .venv/bin/python fuzz/sheet_rows.py -max_total_time=60        # a minute
    .venv/bin/python fuzz/sheet_rows.py -atheris_runs=100000

Each input becomes a worksheet: the canonical header (sometimes with aliases, a WhatsApp channel's columns,
or a header made of the input) and rows of cells from the input, or a CSV upload read by `read_upload`.
The sheet is validated (`validate_sheet`) under a configuration drawn from the input. Refusals are typed:
`SheetFormatError` for the sheet as a whole, `UnreadableFile` for an upload, a `Rejection` for a row.
Anything else is a crash (the ingest run would fail). Every accepted row must also make an
`account.changed` record that decodes as the event (`account_record`, then `cloudevents.decode`): a row
validation lets through but the event refuses would dead-letter downstream.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import atheris

INSTRUMENTED = [
    "arrears_ingest.validation",
    "arrears_ingest.sources.files",
    "arrears_ingest.snapshot.service",
    "arrears_shared.money",
    "arrears_shared.account_status",
    "phonenumbers",
]

with atheris.instrument_imports(include=INSTRUMENTED):
    from arrears_ingest.snapshot.service import account_record
    from arrears_ingest.sources.files import UnreadableFile, read_upload
    from arrears_ingest.validation import ALL_COLUMNS, SheetFormatError, ValidationConfig, validate_sheet
    from arrears_ingest.validation.columns import column_aliases
    from arrears_shared.cloudevents import decode

HEADER = [c.value for c in ALL_COLUMNS]
ALIASED = ["Account Number", "Customer", "Mobile", "Email Address", *HEADER[4:9], "TZ", "Province"]
ALIASED += HEADER[11:]
WHATSAPP = ["WhatsApp", "WhatsApp Consent"]
# what typical cells look like, so that most rows get past the first checks and into the deeper parsers
TYPICAL = [
    "A-1",
    "Ada Lovelace",
    "+1 415 555 0100",
    "ada@example.com",
    "$1,234.50",
    "USD",
    "2026-09-01",
    "2026-08-01",
    "100.00",
    "America/Los_Angeles",
    "CA",
    "1 Main St, San Francisco, CA 94105",
    "US",
    "Y",
    "Yes",
    "Open",
    "a note",
    "",
    "",
]
CONFIGS = [
    ValidationConfig(),
    ValidationConfig(default_region="GB", date_order="EU", default_currency="GBP"),
    ValidationConfig(default_region="JP", default_currency="JPY"),
    ValidationConfig(aliases=column_aliases({"Acct": "Account ID", "Amount Owed": "Balance"})),
]
AS_OF = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def sheet(fdp: atheris.FuzzedDataProvider) -> list[list[str]]:
    kind = fdp.ConsumeIntInRange(0, 3)
    if kind == 0:
        header = list(HEADER)
    elif kind == 1:
        header = list(ALIASED)
    elif kind == 2:
        header = [*HEADER, *WHATSAPP]
    else:
        header = [fdp.ConsumeUnicodeNoSurrogates(20) for _ in range(fdp.ConsumeIntInRange(0, 22))]
    rows: list[list[str]] = [header]
    for _ in range(fdp.ConsumeIntInRange(0, 4)):
        row = []
        for i in range(fdp.ConsumeIntInRange(0, len(header) + 1)):
            typical = TYPICAL[i] if i < len(TYPICAL) else "Y"
            choice = fdp.ConsumeIntInRange(0, 3)
            if choice == 0:
                row.append(typical)
            elif choice == 1:
                row.append(fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 40)))  # surrogates too
            elif choice == 2:  # a typical value with a few characters changed
                cut = fdp.ConsumeIntInRange(0, len(typical))
                row.append(typical[:cut] + fdp.ConsumeUnicodeNoSurrogates(4) + typical[cut + 1 :])
            else:
                row.append("")
        rows.append(row)
    return rows


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    cfg = CONFIGS[fdp.ConsumeIntInRange(0, len(CONFIGS) - 1)]
    if fdp.ConsumeIntInRange(0, 4) == 0:  # an uploaded CSV file
        try:
            _, values = read_upload(
                fdp.ConsumeBytes(fdp.remaining_bytes()), filename="sheet.csv", content_type=None
            )
        except UnreadableFile:
            return
    else:
        values = sheet(fdp)
    try:
        result = validate_sheet(values, cfg)
    except SheetFormatError:
        return
    for row in result.accepted:
        record = account_record(row, "created", AS_OF, "sheet", ce_source="fuzz", id="fuzz-1", time=AS_OF)
        decode(record.headers, record.value)  # any error here is a crash: an accepted row must make an event


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
