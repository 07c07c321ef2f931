"""A1 notation, as the Sheets API v4 reads and writes it.

Supported forms (each optionally prefixed by a sheet name, ``Sheet1!`` or ``'My Sheet'!`` with ``''``
escaping a quote inside a quoted name):

* ``A1`` a single cell, ``A1:C10`` a rectangle, ``$A$1:$C$10`` absolute references;
* ``A:C`` whole columns, ``2:5`` whole rows;
* ``A2:C`` columns A..C from row 2 down, ``A2:5`` rows 2..5 from column A rightwards;
* a bare sheet name (``Sheet1`` or ``'My Sheet'``): the whole sheet.

Reversed corners (``C10:A1``) are normalised, as Google does. Indices here are 0-based, ends exclusive;
``None`` for an end means "to the edge of the grid".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_COLUMNS = 18278  # ZZZ, Google's column limit

_ENDPOINT = re.compile(r"^\$?([A-Za-z]{1,3})?\$?([0-9]+)?$")
_PLAIN_TITLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOOKS_LIKE_CELL = re.compile(r"^[A-Za-z]{1,3}[0-9]+$|^[Rr][0-9]*[Cc][0-9]*$")


class A1Error(ValueError):
    """The text is not a range the Sheets API would accept."""


@dataclass(frozen=True, slots=True)
class RangeRef:
    """A parsed range: the sheet name (``None`` = not given) and the A1 part (``None`` = whole sheet).

    ``bare`` is set when the text had neither ``!`` nor quotes, so it may be either a sheet name or an
    A1 reference on the first sheet; the resolver decides by looking at the sheet titles.
    """

    sheet: str | None
    a1: str | None
    bare: bool = False


@dataclass(frozen=True, slots=True)
class Box:
    """A 0-based rectangle; ``end_row``/``end_col`` exclusive, ``None`` = unbounded."""

    start_row: int
    start_col: int
    end_row: int | None
    end_col: int | None

    @property
    def is_single_cell(self) -> bool:
        return self.end_row == self.start_row + 1 and self.end_col == self.start_col + 1


def column_index(letters: str) -> int:
    """``A`` -> 0, ``Z`` -> 25, ``AA`` -> 26."""
    n = 0
    for ch in letters.upper():
        n = n * 26 + (ord(ch) - 64)
    return n - 1


def column_letters(index: int) -> str:
    """0 -> ``A``, 26 -> ``AA``."""
    out = ""
    n = index + 1
    while n:
        n, rem = divmod(n - 1, 26)
        out = chr(65 + rem) + out
    return out


def split_sheet(text: str) -> RangeRef:
    """Split ``'My Sheet'!A1:B2`` into sheet and A1 parts; raise :class:`A1Error` on bad quoting."""
    text = text.strip()
    if not text:
        raise A1Error("empty range")
    if text.startswith("'"):
        i = 1
        name: list[str] = []
        while i < len(text):
            ch = text[i]
            if ch == "'":
                if i + 1 < len(text) and text[i + 1] == "'":
                    name.append("'")
                    i += 2
                    continue
                break
            name.append(ch)
            i += 1
        else:
            raise A1Error(f"unterminated quoted sheet name in {text!r}")
        rest = text[i + 1 :]
        if rest == "":
            return RangeRef("".join(name), None)
        if not rest.startswith("!"):
            raise A1Error(f"unexpected text after sheet name in {text!r}")
        return RangeRef("".join(name), rest[1:] or None)
    if "!" in text:
        sheet, _, a1 = text.rpartition("!")
        return RangeRef(sheet, a1 or None)
    return RangeRef(None, text, bare=True)


def _endpoint(text: str) -> tuple[int | None, int | None]:
    m = _ENDPOINT.match(text)
    if not m or (m.group(1) is None and m.group(2) is None):
        raise A1Error(f"bad cell reference {text!r}")
    col = column_index(m.group(1)) if m.group(1) else None
    row = int(m.group(2)) - 1 if m.group(2) else None
    if row is not None and row < 0:
        raise A1Error(f"row 0 does not exist in {text!r}")
    if col is not None and col >= MAX_COLUMNS:
        raise A1Error(f"column out of range in {text!r}")
    return col, row


def _axis(first: int | None, second: int | None) -> tuple[int, int | None]:
    if first is not None and second is not None:
        return min(first, second), max(first, second) + 1
    if first is not None:
        return first, None
    if second is not None:
        return 0, second + 1
    return 0, None


def parse_a1(a1: str) -> Box:
    """Parse the A1 part (no sheet name) into a :class:`Box`; raise :class:`A1Error` if malformed."""
    parts = a1.strip().split(":")
    if len(parts) == 1:
        col, row = _endpoint(parts[0])
        if col is None or row is None:
            raise A1Error(f"a single reference needs a column and a row: {a1!r}")
        return Box(row, col, row + 1, col + 1)
    if len(parts) != 2:
        raise A1Error(f"bad range {a1!r}")
    (c1, r1), (c2, r2) = _endpoint(parts[0]), _endpoint(parts[1])
    if (r1 is None and c2 is None) or (c1 is None and r2 is None):
        raise A1Error(f"bad range {a1!r}")
    start_row, end_row = _axis(r1, r2)
    start_col, end_col = _axis(c1, c2)
    return Box(start_row, start_col, end_row, end_col)


def needs_quotes(title: str) -> bool:
    """Whether Google quotes this sheet title when it prints a range."""
    return not _PLAIN_TITLE.match(title) or bool(_LOOKS_LIKE_CELL.match(title))


def quote_title(title: str) -> str:
    if needs_quotes(title):
        return "'" + title.replace("'", "''") + "'"
    return title


def format_range(title: str, start_row: int, start_col: int, end_row: int, end_col: int) -> str:
    """A bounded rectangle as Google prints it: ``Sheet1!A1:C10`` or ``Sheet1!B2`` for one cell."""
    first = f"{column_letters(start_col)}{start_row + 1}"
    if end_row - start_row <= 1 and end_col - start_col <= 1:
        return f"{quote_title(title)}!{first}"
    return f"{quote_title(title)}!{first}:{column_letters(end_col - 1)}{end_row}"
