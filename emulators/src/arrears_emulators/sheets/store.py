"""Spreadsheet state and the value operations of the Sheets API v4 (get, update, append, clear).

Storage is row-major and sparse at the edges: ``Sheet.rows`` holds only the rows up to the last non-empty
one, each row trimmed of trailing empty cells — the same shape Google returns, so a full-sheet read is a
slice, not a scan. A cell holds ``str`` or, when written as a JSON number/boolean or parsed from
``USER_ENTERED`` input, ``int``/``float``/``bool``; ``Sheet.typed_rows`` records which rows hold a
non-string so that formatted reads convert only those rows.

Differences from Google (recorded here and in docs): formulas are stored but not evaluated (the formatted
value of ``=A1+1`` is the formula text); ``USER_ENTERED`` converts plain numbers and TRUE/FALSE only —
currency, percentages and dates stay text; number formats are not modelled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .a1 import A1Error, Box, column_letters, format_range, parse_a1, split_sheet
from .errors import bad_request

Cell = str | int | float | bool
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_INT = re.compile(r"^[+-]?\d{1,15}$")


def display(value: Cell) -> str:
    """The formatted value Google shows for a stored value under the default (General) format."""
    if isinstance(value, str):
        return value
    if value is True:
        return "TRUE"
    if value is False:
        return "FALSE"
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return format(value, ".15g").replace("e", "E")


def user_entered(value: str) -> Cell:
    """Parse a string as if typed into the Sheets UI (``valueInputOption=USER_ENTERED``)."""
    if value.startswith("'"):
        return value[1:]
    text = value.strip()
    if _NUMBER.match(text):
        if _INT.match(text):
            return int(text)
        return float(text)
    upper = text.upper()
    if upper == "TRUE":
        return True
    if upper == "FALSE":
        return False
    return value


def rtrim(row: list[Any]) -> list[Any]:
    while row and (row[-1] == "" or row[-1] is None):
        row.pop()
    return row


def has_typed(row: Iterable[Any]) -> bool:
    return any(type(v) is not str for v in row)


@dataclass
class WriteResult:
    updated_range: str
    rows: int
    columns: int
    cells: int
    box: tuple[int, int, int, int] = (0, 0, 0, 0)

    def as_response(self, spreadsheet_id: str) -> dict[str, Any]:
        return {
            "spreadsheetId": spreadsheet_id,
            "updatedRange": self.updated_range,
            "updatedRows": self.rows,
            "updatedColumns": self.columns,
            "updatedCells": self.cells,
        }


@dataclass
class Sheet:
    sheet_id: int
    title: str
    index: int
    row_count: int
    col_count: int
    rows: list[list[Cell]] = field(default_factory=list)
    typed_rows: set[int] = field(default_factory=set)

    # -- metadata -------------------------------------------------------------------------------
    def properties(self) -> dict[str, Any]:
        return {
            "sheetId": self.sheet_id,
            "title": self.title,
            "index": self.index,
            "sheetType": "GRID",
            "gridProperties": {"rowCount": self.row_count, "columnCount": self.col_count},
        }

    @property
    def cells(self) -> int:
        return self.row_count * self.col_count

    def whole(self) -> Box:
        return Box(0, 0, None, None)

    def clip(self, box: Box, *, label: str) -> tuple[int, int, int, int]:
        """Clip a box to the grid; a start outside the grid is Google's 'exceeds grid limits' 400."""
        if box.start_row >= self.row_count or box.start_col >= self.col_count:
            raise bad_request(
                f"Range ({label}) exceeds grid limits. Max rows: {self.row_count}, "
                f"max columns: {self.col_count}"
            )
        end_row = self.row_count if box.end_row is None else min(box.end_row, self.row_count)
        end_col = self.col_count if box.end_col is None else min(box.end_col, self.col_count)
        return box.start_row, box.start_col, end_row, end_col

    # -- reads ----------------------------------------------------------------------------------
    def read(self, r0: int, c0: int, r1: int, c1: int, *, formatted: bool) -> list[list[Cell]]:
        """Values of the rectangle, trailing empty cells and rows removed (Google's shape)."""
        out: list[list[Cell]] = []
        typed = self.typed_rows
        for i, row in enumerate(self.rows[r0:r1], start=r0):
            if c0 == 0 and c1 >= len(row):
                part = row
            else:
                part = rtrim(row[c0:c1])
            if formatted and i in typed:
                part = [display(v) for v in part]
            out.append(part)
        while out and not out[-1]:
            out.pop()
        return out

    # -- writes ---------------------------------------------------------------------------------
    def grow(self, rows: int, cols: int) -> None:
        self.row_count = max(self.row_count, rows)
        self.col_count = max(self.col_count, cols)

    def write(self, r0: int, c0: int, data: Sequence[Sequence[Cell | None]]) -> tuple[int, int, int]:
        """Write converted values at (r0, c0); ``None`` leaves a cell unchanged, ``""`` clears it.

        Returns (rows touched, columns touched, cells touched). The caller has grown the grid.
        """
        rows = self.rows
        need = r0 + len(data)
        if len(rows) < need:
            rows.extend([] for _ in range(need - len(rows)))
        touched_rows = 0
        touched_cols: set[int] = set()
        full_width = 0
        cells = 0
        for offset, values in enumerate(data):
            if not values:
                continue
            i = r0 + offset
            row = rows[i]
            before = cells
            has_none = any(v is None for v in values)
            if not has_none and c0 == 0 and len(values) >= len(row):
                new_row = list(values)
                full_width = max(full_width, len(values))
                cells += len(values)
            else:
                new_row = list(row)
                end = c0 + len(values)
                if len(new_row) < end:
                    new_row.extend([""] * (end - len(new_row)))
                for j, v in enumerate(values):
                    if v is None:
                        continue
                    new_row[c0 + j] = v
                    touched_cols.add(c0 + j)
                    cells += 1
            if cells > before:
                touched_rows += 1
            rtrim(new_row)
            rows[i] = new_row  # type: ignore[assignment]
            if has_typed(new_row):
                self.typed_rows.add(i)
            else:
                self.typed_rows.discard(i)
        self._trim_rows()
        touched_cols.update(range(full_width))
        return touched_rows, len(touched_cols), cells

    def clear(self, r0: int, c0: int, r1: int, c1: int) -> None:
        for i in range(r0, min(r1, len(self.rows))):
            row = self.rows[i]
            if c0 >= len(row):
                continue
            if c0 == 0 and c1 >= len(row):
                self.rows[i] = []
            else:
                new_row = list(row)
                for j in range(c0, min(c1, len(new_row))):
                    new_row[j] = ""
                self.rows[i] = rtrim(new_row)
            if not has_typed(self.rows[i]):
                self.typed_rows.discard(i)
        self._trim_rows()

    def insert_rows(self, at: int, count: int) -> None:
        if at < len(self.rows):
            self.rows[at:at] = [[] for _ in range(count)]
            self.typed_rows = {i + count if i >= at else i for i in self.typed_rows}
        self.row_count += count

    def resize(self, rows: int, cols: int) -> None:
        """Set the grid size; data beyond the new edges is dropped, as in Google."""
        self.row_count, self.col_count = rows, cols
        del self.rows[rows:]
        for i, row in enumerate(self.rows):
            if len(row) > cols:
                self.rows[i] = rtrim(row[:cols])
        self.typed_rows = {i for i in self.typed_rows if i < len(self.rows) and has_typed(self.rows[i])}
        self._trim_rows()

    def last_data_row(self, r0: int, c0: int, c1: int) -> int:
        """Index of the last row at or below ``r0`` with a value in columns [c0, c1); -1 if none."""
        for i in range(len(self.rows) - 1, r0 - 1, -1):
            row = self.rows[i]
            if any(v != "" for v in row[c0:c1]):
                return i
        return -1

    def _trim_rows(self) -> None:
        rows = self.rows
        while rows and not rows[-1]:
            rows.pop()
            self.typed_rows.discard(len(rows))

    # -- grid data (spreadsheets.get?includeGridData=true) --------------------------------------
    def grid_data(self, r0: int, c0: int, r1: int, c1: int) -> dict[str, Any]:
        row_data: list[dict[str, Any]] = []
        for row in self.read(r0, c0, r1, c1, formatted=False):
            values: list[dict[str, Any]] = []
            for v in row:
                values.append(_cell_data(v))
            row_data.append({"values": values} if values else {})
        data: dict[str, Any] = {"rowData": row_data} if row_data else {}
        if r0:
            data["startRow"] = r0
        if c0:
            data["startColumn"] = c0
        return data


def _cell_data(value: Cell) -> dict[str, Any]:
    if value == "":
        return {}
    if type(value) is str:
        key = "formulaValue" if value.startswith("=") else "stringValue"
        return {
            "userEnteredValue": {key: value},
            "effectiveValue": {"stringValue": value},
            "formattedValue": value,
        }
    typed: dict[str, Any] = {"boolValue": value} if isinstance(value, bool) else {"numberValue": value}
    return {"userEnteredValue": typed, "effectiveValue": typed, "formattedValue": display(value)}


@dataclass
class Spreadsheet:
    spreadsheet_id: str
    title: str
    sheets: list[Sheet] = field(default_factory=list)
    next_sheet_id: int = 0
    version: int = 0

    # -- sheets ---------------------------------------------------------------------------------
    def add_sheet(self, title: str, rows: int = 1000, cols: int = 26, sheet_id: int | None = None) -> Sheet:
        if self.find_sheet(title) is not None:
            raise bad_request(
                f'Invalid requests[0].addSheet: A sheet with the name "{title}" already exists. '
                "Please enter another name."
            )
        if sheet_id is None:
            sheet_id = self.next_sheet_id
        self.next_sheet_id = max(self.next_sheet_id, sheet_id) + 1
        sheet = Sheet(sheet_id=sheet_id, title=title, index=len(self.sheets), row_count=rows, col_count=cols)
        self.sheets.append(sheet)
        return sheet

    def delete_sheet(self, sheet_id: int) -> None:
        sheet = self.sheet_by_id(sheet_id)
        if len(self.sheets) == 1:
            raise bad_request(
                "Invalid requests[0].deleteSheet: You can't remove all the sheets in a document."
            )
        self.sheets.remove(sheet)
        for i, s in enumerate(self.sheets):
            s.index = i

    def sheet_by_id(self, sheet_id: int) -> Sheet:
        for s in self.sheets:
            if s.sheet_id == sheet_id:
                return s
        raise bad_request(f"No grid with id: {sheet_id}")

    def find_sheet(self, title: str) -> Sheet | None:
        for s in self.sheets:
            if s.title == title:
                return s
        folded = title.casefold()
        for s in self.sheets:
            if s.title.casefold() == folded:
                return s
        return None

    @property
    def cells(self) -> int:
        return sum(s.cells for s in self.sheets)

    def metadata(self) -> dict[str, Any]:
        return {
            "spreadsheetId": self.spreadsheet_id,
            "properties": {
                "title": self.title,
                "locale": "en_US",
                "autoRecalc": "ON_CHANGE",
                "timeZone": "Etc/GMT",
            },
            "sheets": [{"properties": s.properties()} for s in self.sheets],
            "spreadsheetUrl": f"https://docs.google.com/spreadsheets/d/{self.spreadsheet_id}/edit",
        }

    # -- ranges ---------------------------------------------------------------------------------
    def resolve(self, text: str) -> tuple[Sheet, Box]:
        """Resolve a range string to a sheet and box; 400 ``Unable to parse range`` as Google says."""
        try:
            ref = split_sheet(text)
        except A1Error as exc:
            raise bad_request(f"Unable to parse range: {text}") from exc
        if ref.bare:
            assert ref.a1 is not None
            sheet = self.find_sheet(ref.a1)
            if sheet is not None:
                return sheet, sheet.whole()
            if not self.sheets:
                raise bad_request(f"Unable to parse range: {text}")
            try:
                return self.sheets[0], parse_a1(ref.a1)
            except A1Error as exc:
                raise bad_request(f"Unable to parse range: {text}") from exc
        assert ref.sheet is not None
        found = self.find_sheet(ref.sheet)
        if found is None:
            raise bad_request(f"Unable to parse range: {text}")
        if ref.a1 is None:
            return found, found.whole()
        try:
            return found, parse_a1(ref.a1)
        except A1Error as exc:
            raise bad_request(f"Unable to parse range: {text}") from exc

    def check_growth(self, sheet: Sheet, rows: int, cols: int, max_cells: int) -> None:
        new_cells = self.cells - sheet.cells + max(rows, sheet.row_count) * max(cols, sheet.col_count)
        if new_cells > max_cells:
            raise bad_request(
                "This action would increase the number of cells in the workbook above the limit of "
                f"{max_cells} cells."
            )

    # -- value operations -----------------------------------------------------------------------
    def get_values(
        self, text: str, *, major: str = "ROWS", render: str = "FORMATTED_VALUE"
    ) -> dict[str, Any]:
        sheet, box = self.resolve(text)
        r0, c0, r1, c1 = sheet.clip(box, label=text)
        values = sheet.read(r0, c0, r1, c1, formatted=render == "FORMATTED_VALUE")
        if major == "COLUMNS":
            values = _transpose(values)
        out: dict[str, Any] = {"range": format_range(sheet.title, r0, c0, r1, c1), "majorDimension": major}
        if values:
            out["values"] = values
        return out

    def prepare_write(
        self,
        text: str,
        values: Sequence[Sequence[Any]] | None,
        *,
        major: str,
        input_option: str,
        max_cells: int,
    ) -> tuple[Sheet, int, int, list[list[Cell | None]]]:
        """Validate a write (range, bounds, cell limit) without changing anything."""
        sheet, box = self.resolve(text)
        data = _convert(values or [], input_option)
        if major == "COLUMNS":
            data = _transpose_in(data)
        nrows = len(data)
        ncols = max((len(r) for r in data), default=0)
        if not box.is_single_cell:
            label = format_range(
                sheet.title,
                box.start_row,
                box.start_col,
                box.end_row if box.end_row is not None else sheet.row_count,
                box.end_col if box.end_col is not None else sheet.col_count,
            )
            if box.end_row is not None and nrows > box.end_row - box.start_row:
                raise bad_request(
                    f"Requested writing within range [{label}], but tried writing to row "
                    f"[{box.start_row + nrows}]"
                )
            if box.end_col is not None and ncols > box.end_col - box.start_col:
                raise bad_request(
                    f"Requested writing within range [{label}], but tried writing to column "
                    f"[{column_letters(box.start_col + ncols - 1)}]"
                )
        self.check_growth(sheet, box.start_row + nrows, box.start_col + ncols, max_cells)
        return sheet, box.start_row, box.start_col, data

    def apply_write(self, sheet: Sheet, r0: int, c0: int, data: list[list[Cell | None]]) -> WriteResult:
        nrows = len(data)
        ncols = max((len(r) for r in data), default=0)
        sheet.grow(r0 + nrows, c0 + ncols)
        rows, cols, cells = sheet.write(r0, c0, data)
        if nrows and ncols:
            updated = format_range(sheet.title, r0, c0, r0 + nrows, c0 + ncols)
        else:
            updated = format_range(sheet.title, r0, c0, r0 + 1, c0 + 1)
        return WriteResult(updated, rows, cols, cells, (r0, c0, r0 + nrows, c0 + ncols))

    def append(
        self,
        text: str,
        values: Sequence[Sequence[Any]] | None,
        *,
        major: str,
        input_option: str,
        insert_rows: bool,
        max_cells: int,
    ) -> tuple[str | None, WriteResult, Sheet]:
        """``values:append``: find the table in the range and write after its last row.

        The table is approximated as "rows at or below the range's first row that have a value in the
        range's columns"; Google's detection of contiguous tables is finer but agrees on ordinary sheets.
        """
        sheet, box = self.resolve(text)
        data = _convert(values or [], input_option)
        if major == "COLUMNS":
            data = _transpose_in(data)
        nrows = len(data)
        ncols = max((len(r) for r in data), default=0)
        c0 = box.start_col
        span_end = box.end_col if box.end_col is not None else sheet.col_count
        last = sheet.last_data_row(box.start_row, c0, span_end)
        table_range: str | None = None
        if last >= 0:
            first = box.start_row
            width = max((len(r) for r in sheet.rows[first : last + 1]), default=c0 + 1)
            table_range = format_range(sheet.title, first, c0, last + 1, max(min(width, span_end), c0 + 1))
        start = last + 1 if last >= 0 else box.start_row
        extra_rows = nrows if insert_rows else 0
        self.check_growth(sheet, max(start + nrows, sheet.row_count + extra_rows), c0 + ncols, max_cells)
        if insert_rows:
            sheet.insert_rows(start, nrows)
        result = self.apply_write(sheet, start, c0, data)
        return table_range, result, sheet

    def clear(self, text: str) -> str:
        sheet, box = self.resolve(text)
        r0, c0, r1, c1 = sheet.clip(box, label=text)
        sheet.clear(r0, c0, r1, c1)
        return format_range(sheet.title, r0, c0, r1, c1)

    def dump(self) -> dict[str, list[list[Cell]]]:
        return {s.title: [list(r) for r in s.rows] for s in self.sheets}


def _convert(values: Sequence[Sequence[Any]], input_option: str) -> list[list[Cell | None]]:
    if input_option == "USER_ENTERED":
        return [[user_entered(v) if type(v) is str else v for v in row] for row in values]
    return [list(row) for row in values]


def _transpose_in(columns: list[list[Cell | None]]) -> list[list[Cell | None]]:
    height = max((len(c) for c in columns), default=0)
    return [[col[i] if i < len(col) else None for col in columns] for i in range(height)]


def _transpose(rows: list[list[Cell]]) -> list[list[Cell]]:
    width = max((len(r) for r in rows), default=0)
    out = [rtrim([row[c] if c < len(row) else "" for row in rows]) for c in range(width)]
    while out and not out[-1]:
        out.pop()
    return out
