"""CSV and XLSX uploads -> the same list-of-rows shape as the sheet's `get_all_values()`.

Cells come back as the text a person sees: XLSX dates as ISO dates (Excel stores them as numbers with a
date format; openpyxl converts them), whole floats without ".0", everything else `str()`. CSV: UTF-8 (with
or without BOM), else Windows-1252; delimiter sniffed among `, ; <tab> |`.
"""

from __future__ import annotations

import csv
import io
import zipfile
import zlib
from datetime import date, datetime, time
from decimal import Decimal
from typing import Literal
from xml.etree.ElementTree import ParseError

FileKind = Literal["csv", "xlsx"]
XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_MAX_ROWS = 1_000_000
# what a damaged workbook raises while it is opened or its rows are streamed (corrupt zip data, bad XML)
_XLSX_ERRORS = (zipfile.BadZipFile, zlib.error, ParseError, KeyError, OSError, ValueError, EOFError)


class UnreadableFile(ValueError):
    """The upload is not a readable CSV/XLSX file (answered 400 with this message)."""


def detect_kind(filename: str | None, content_type: str | None, data: bytes) -> FileKind:
    """By content first (XLSX is a zip archive), then by name / media type; default CSV."""
    if data[:4] == b"PK\x03\x04":
        return "xlsx"
    name = (filename or "").lower()
    media = (content_type or "").split(";")[0].strip().lower()
    if name.endswith((".xlsx", ".xlsm")) or media == XLSX_MEDIA:
        raise UnreadableFile("the file is named/typed XLSX but is not an XLSX (zip) file")
    if name.endswith(".xls") or media == "application/vnd.ms-excel":
        raise UnreadableFile("legacy .xls files are not supported: save as .xlsx or .csv")
    return "csv"


def read_csv(data: bytes) -> list[list[str]]:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - cp1252 decodes almost anything; latin-1 decodes everything
        text = data.decode("latin-1")
    if "\x00" in text:
        raise UnreadableFile("the file is binary, not CSV text")
    sample = text[:64_000]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    try:
        rows = [list(r) for r in csv.reader(io.StringIO(text, newline=""), dialect)]
    except csv.Error as e:
        raise UnreadableFile(f"CSV parse error: {e}") from None
    if len(rows) > _MAX_ROWS:
        raise UnreadableFile(f"more than {_MAX_ROWS} rows")
    return rows


def _cell_text(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, datetime):
        return v.date().isoformat() if v.time() == time(0) else v.isoformat(sep=" ")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    if isinstance(v, Decimal):
        return format(v, "f")
    return str(v)


def read_xlsx(data: bytes, worksheet: str | None = None) -> list[list[str]]:
    from openpyxl import load_workbook  # imported on use: openpyxl takes ~0.3 s to import

    from .xlsx_guard import check_xlsx  # imports this module: imported on use

    check_xlsx(data)  # decompression bombs, nested archives, DTDs: refused before openpyxl sees the file
    try:
        # read-only: rows are streamed, never the whole sheet in memory; no external links, no VBA
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True, keep_links=False)
    except UnreadableFile:
        raise
    except _XLSX_ERRORS as e:
        raise UnreadableFile(f"not a readable XLSX workbook: {type(e).__name__}: {str(e)[:200]}") from None
    try:
        if worksheet is not None:
            names = {n.casefold(): n for n in wb.sheetnames}
            if worksheet.casefold() not in names:
                raise UnreadableFile(f"worksheet {worksheet!r} not found (has: {', '.join(wb.sheetnames)})")
            ws = wb[names[worksheet.casefold()]]
        else:
            ws = wb.worksheets[0]
        rows: list[list[str]] = []
        for r in ws.iter_rows(values_only=True):
            rows.append([_cell_text(v) for v in r])
            if len(rows) > _MAX_ROWS:
                raise UnreadableFile(f"more than {_MAX_ROWS} rows")
    except UnreadableFile:
        raise
    except _XLSX_ERRORS as e:
        raise UnreadableFile(f"not a readable XLSX worksheet: {type(e).__name__}: {str(e)[:200]}") from None
    finally:
        wb.close()
    # read-only mode pads every row to the sheet's max column: trim trailing empty cells and rows
    for row in rows:
        while row and row[-1] == "":
            row.pop()
    while rows and not rows[-1]:
        rows.pop()
    return rows


def read_upload(
    data: bytes, *, filename: str | None, content_type: str | None, worksheet: str | None = None
) -> tuple[FileKind, list[list[str]]]:
    if not data:
        raise UnreadableFile("the file is empty")
    kind = detect_kind(filename, content_type, data)
    return kind, (read_xlsx(data, worksheet) if kind == "xlsx" else read_csv(data))
