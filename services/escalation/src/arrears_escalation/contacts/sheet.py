"""Read the manual tracking sheet (the "Manual contacts" sheet of the console's export, filled in by hand,
as CSV or XLSX) into contacts, row by row: each good row becomes a `RecordContact`, each bad row a
`RowRejected` with its row number (the header is row 1) and the reason, so one bad row never stops the rest.

Bounded: the caller caps the bytes; here the rows (`max_rows`), and an XLSX is checked before openpyxl
opens it (its parts' declared sizes, which `zipfile` never inflates past: no decompression bomb)."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from arrears_shared.money import to_minor
from openpyxl import load_workbook
from pydantic import ValidationError

from .models import AccountFacts, RecordContact, RowRejected

XLSX_MEDIA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SHEET_NAME = "Manual contacts"
REQUIRED = ("account_id", "when", "channel", "outcome")
MAX_XLSX_INFLATED = 64 * 1024 * 1024


class UnreadableSheet(ValueError):
    """The whole file is unusable (not CSV/XLSX, no header, too many rows): the API answers 400/413."""


@dataclass
class SheetRow:
    row: int
    account_id: str
    body: RecordContact


def _key(header: object) -> str:
    return str(header or "").strip().lower().replace(" ", "_").replace("-", "_")


def _word(value: object) -> str:
    return str(value or "").strip().lower().replace(" ", "_").replace("-", "_")


def _xlsx_rows(data: bytes) -> Iterator[list[Any]]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            if sum(i.file_size for i in zf.infolist()) > MAX_XLSX_INFLATED:
                raise UnreadableSheet("the XLSX would decompress to more than 64 MiB")
    except zipfile.BadZipFile:
        raise UnreadableSheet("not an XLSX file (the zip archive is unreadable)") from None
    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True, keep_links=False)
    except Exception as e:  # openpyxl raises many types for a broken workbook
        raise UnreadableSheet(f"not a readable XLSX file ({type(e).__name__})") from None
    try:
        ws = wb[SHEET_NAME] if SHEET_NAME in wb.sheetnames else wb.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        while True:
            try:
                values = next(rows)
            except StopIteration:
                break
            except Exception as e:  # a sheet part that does not parse (read lazily, row by row)
                raise UnreadableSheet(f"not a readable XLSX file ({type(e).__name__})") from None
            yield list(values)
    finally:
        wb.close()


def _csv_rows(data: bytes) -> Iterator[list[Any]]:
    try:
        decoded = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UnreadableSheet("the CSV is not UTF-8") from None
    try:
        yield from csv.reader(io.StringIO(decoded))
    except csv.Error as e:  # a field past the csv module's limit, a broken quote
        raise UnreadableSheet(f"not a readable CSV file ({e})") from None


def raw_rows(data: bytes, filename: str | None, content_type: str | None) -> Iterator[list[Any]]:
    is_xlsx = data[:4] == b"PK\x03\x04" or (content_type or "").startswith(XLSX_MEDIA)
    if filename and filename.lower().endswith(".xlsx"):
        is_xlsx = True
    return _xlsx_rows(data) if is_xlsx else _csv_rows(data)


def _instant(value: object, tz: tzinfo) -> datetime:
    if isinstance(value, datetime):
        d = value
    elif isinstance(value, date):
        raise ValueError("`when` needs a time as well as a date")
    else:
        s = str(value or "").strip()
        if not s:
            raise ValueError("`when` is empty")
        if _is_day(s):
            raise ValueError(f"`when` needs a time as well as a date: {s!r}")
        try:
            d = datetime.fromisoformat(s.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"`when` is not a date and time (2026-07-01 14:30): {s[:40]!r}") from None
    return d if d.tzinfo else d.replace(tzinfo=tz)


def _is_day(s: str) -> bool:
    try:
        date.fromisoformat(s)
    except ValueError:
        return False
    return True


def _day(value: object) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date() if value.time() == time(0) else _bad_day(value)
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"promise_date is not a date (2026-07-31): {str(value)[:40]!r}") from None


def _bad_day(value: object) -> date:
    raise ValueError(f"promise_date is a date without a time: {value!s}")


def _minor(value: object, facts: AccountFacts | None) -> int | None:
    if value is None or str(value).strip() == "":
        return None
    if facts is None or not facts.currency:
        raise ValueError("promise_amount needs the account's currency, which escalation does not know")
    try:
        amount = Decimal(str(value).replace(",", "").strip())
        if not amount.is_finite():
            raise InvalidOperation
        return to_minor(amount, facts.currency)
    except (ArithmeticError, ValueError):  # not a number, NaN, infinite, more decimals than the currency has
        raise ValueError(
            f"promise_amount is not an amount in {facts.currency}: {str(value)[:40]!r}"
        ) from None


def load_table(data: bytes, filename: str | None, content_type: str | None, max_rows: int) -> list[list[Any]]:
    """Every row of the file (the header included), refusing more than `max_rows` rows below the header."""
    table: list[list[Any]] = []
    filled = 0
    for values in raw_rows(data, filename, content_type):
        table.append(values)
        if any(v is not None and str(v).strip() != "" for v in values):
            filled += 1
            if filled > max_rows + 1:
                raise UnreadableSheet(
                    f"more than {max_rows} rows (ARREARS_ESCALATION_CONTACTS_IMPORT_MAX_ROWS)"
                )
    return table


def header_of(table: list[list[Any]]) -> tuple[int, dict[str, int]]:
    """(index of the header row, column name -> index)."""
    for at, values in enumerate(table):
        keys = [_key(v) for v in values]
        if not any(keys):
            continue
        missing = [c for c in REQUIRED if c not in keys]
        if missing:
            raise UnreadableSheet(f"the header row lacks the columns {', '.join(missing)}")
        return at, {k: i for i, k in reversed(list(enumerate(keys))) if k}
    raise UnreadableSheet("the file has no header row")


def _cells(table: list[list[Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number as a spreadsheet shows it, cells by column name) for every non-blank row below the header."""
    at, cols = header_of(table)
    for index in range(at + 1, len(table)):
        values = table[index]
        cell = {k: (values[i] if i < len(values) else None) for k, i in cols.items()}
        if all(v is None or str(v).strip() == "" for v in cell.values()):
            continue
        yield index + 1, cell


def account_ids(table: list[list[Any]]) -> list[str]:
    return sorted({str(c.get("account_id") or "").strip() for _, c in _cells(table)} - {""})


def read_rows(
    table: list[list[Any]], *, tz: tzinfo, facts: dict[str, AccountFacts]
) -> tuple[int, list[SheetRow], list[RowRejected]]:
    """(rows read, good rows, bad rows). `facts`: what escalation knows of the accounts (for the promised
    amount's currency); the caller checks each good row's time against them."""
    good: list[SheetRow] = []
    bad: list[RowRejected] = []
    n = 0
    for number, cell in _cells(table):
        n += 1
        account_id = str(cell.get("account_id") or "").strip()
        if not account_id or len(account_id) > 64:
            bad.append(RowRejected(row=number, column="account_id", reason="account_id is empty or too long"))
            continue
        try:
            body = RecordContact(
                channel=_word(cell.get("channel")),  # type: ignore[arg-type]  # validated by the model
                direction=_word(cell.get("direction")) or "outbound",  # type: ignore[arg-type]
                outcome=_word(cell.get("outcome")),  # type: ignore[arg-type]
                contacted_at=_instant(cell.get("when"), tz),
                note=str(cell.get("note") or "").strip(),
                promise_amount_minor=_minor(cell.get("promise_amount"), facts.get(account_id)),
                promise_date=_day(cell.get("promise_date")),
                contact_id=str(cell["contact_id"]).strip() if cell.get("contact_id") else None,
            )
        except ValidationError as e:
            err = e.errors()[0]
            column = _COLUMN_OF.get(str(err["loc"][0]), str(err["loc"][0])) if err["loc"] else None
            bad.append(RowRejected(row=number, column=column, reason=_reason(err)))
            continue
        except ValueError as e:
            bad.append(RowRejected(row=number, reason=str(e)))
            continue
        good.append(SheetRow(row=number, account_id=account_id, body=body))
    return n, good, bad


_COLUMN_OF = {"contacted_at": "when", "promise_amount_minor": "promise_amount"}


def _reason(err: Any) -> str:
    where = ".".join(_COLUMN_OF.get(str(p), str(p)) for p in err["loc"])
    given = err.get("input")
    shown = f" (got {str(given)[:40]!r})" if isinstance(given, str | int | float) else ""
    return f"{where}: {err['msg']}{shown}" if where else str(err["msg"])
