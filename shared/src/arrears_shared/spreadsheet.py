"""Cells safe to open in Excel or Google Sheets (OWASP "CSV injection"): a text cell starting with `=`, `+`,
`-`, `@`, a tab or a carriage return would be read as a formula, so it gets a leading apostrophe, which
spreadsheets show as text. Numbers are left as numbers."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def cell_safe(value: object) -> str:
    s = "" if value is None else str(value)
    return "'" + s if s.startswith(FORMULA_PREFIXES) else s


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([cell_safe(h) for h in header])
    for row in rows:
        w.writerow(
            [v if isinstance(v, int | float) and not isinstance(v, bool) else cell_safe(v) for v in row]
        )
    return buf.getvalue()
