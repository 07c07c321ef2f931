"""The export's files: CSV streamed a line at a time, XLSX through openpyxl's write-only mode (rows go to
temporary files as they come; the finished file is spooled to disk past a few MiB and streamed from there).
Every text cell is made safe to open in a spreadsheet (arrears_shared.spreadsheet): nothing starting with
`=`, `+`, `-`, `@`, a tab or a carriage return can run as a formula."""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import AsyncIterator, Sequence
from typing import Any

from arrears_shared.spreadsheet import cell_safe
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.worksheet._write_only import WriteOnlyWorksheet
from openpyxl.worksheet.datavalidation import DataValidation

from .columns import CHANNELS, DIRECTIONS, MANUAL_CONTACTS, OUTCOMES

CHUNK = 64 * 1024
MANUAL_ROWS = 2000  # rows of the manual contacts sheet that carry the drop-downs


def safe(v: Any) -> Any:
    return v if isinstance(v, int | float) and not isinstance(v, bool) else cell_safe(v)


async def csv_stream(header: Sequence[str], rows: AsyncIterator[list[Any]]) -> AsyncIterator[bytes]:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow([cell_safe(h) for h in header])
    async for row in rows:
        w.writerow([safe(v) for v in row])
        if buf.tell() >= CHUNK:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode()


class XlsxBook:
    """A write-only workbook filled sheet by sheet, then streamed."""

    def __init__(self) -> None:
        self.wb = Workbook(write_only=True)
        self.bold = Font(bold=True)

    def sheet(self, title: str, header: Sequence[str]) -> WriteOnlyWorksheet:
        ws = self.wb.create_sheet(title)
        ws.freeze_panes = "A2"
        ws.append([self._head(ws, h) for h in header])
        return ws

    def _head(self, ws: WriteOnlyWorksheet, h: str) -> WriteOnlyCell:
        c = WriteOnlyCell(ws, value=cell_safe(h))
        c.font = self.bold
        return c

    @staticmethod
    def append(ws: WriteOnlyWorksheet, row: list[Any]) -> None:
        ws.append([safe(v) for v in row])

    def manual_contacts(self, title: str) -> None:
        """The empty sheet to fill in by hand, its choices as drop-downs (a list of allowed values)."""
        ws = self.sheet(title, MANUAL_CONTACTS)
        col = {name: chr(ord("A") + i) for i, name in enumerate(MANUAL_CONTACTS)}
        for name, allowed in (("channel", CHANNELS), ("direction", DIRECTIONS), ("outcome", OUTCOMES)):
            dv = DataValidation(
                type="list",
                formula1='"' + ",".join(allowed) + '"',
                allow_blank=True,
                showErrorMessage=True,
                errorTitle=f"Not a {name}",
                error=f"Choose one of: {', '.join(allowed)}",
                promptTitle=name,
                prompt=", ".join(allowed),
            )
            dv.add(f"{col[name]}2:{col[name]}{MANUAL_ROWS + 1}")
            ws.data_validations.append(dv)
        when = DataValidation(
            type="date",
            operator="greaterThan",
            formula1="36526",  # 2000-01-01: a date and time, e.g. 2026-07-01 14:30
            allow_blank=True,
            showErrorMessage=True,
            error="A date and time, e.g. 2026-07-01 14:30 (your local time unless it says +hh:mm)",
        )
        when.add(f"{col['when']}2:{col['when']}{MANUAL_ROWS + 1}")
        ws.data_validations.append(when)
        amount = DataValidation(type="decimal", operator="greaterThanOrEqual", formula1="0", allow_blank=True)
        amount.add(f"{col['promise_amount']}2:{col['promise_amount']}{MANUAL_ROWS + 1}")
        ws.data_validations.append(amount)
        day = DataValidation(type="date", operator="greaterThan", formula1="36526", allow_blank=True)
        day.add(f"{col['promise_date']}2:{col['promise_date']}{MANUAL_ROWS + 1}")
        ws.data_validations.append(day)

    def stream(self) -> AsyncIterator[bytes]:
        spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
        self.wb.save(spool)
        spool.seek(0)

        async def chunks() -> AsyncIterator[bytes]:
            with spool:
                while block := spool.read(CHUNK):
                    yield block

        return chunks()
