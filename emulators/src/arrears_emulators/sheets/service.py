"""The emulator's state and behaviour, independent of HTTP: spreadsheets, quotas, faults, stats."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections import OrderedDict
from typing import Any, Literal

from .errors import SheetsApiError, bad_request
from .faults import FaultInjector
from .fields import FieldMaskError, apply_fields, parse_fields
from .models import (
    BatchUpdateSpreadsheetIn,
    BatchUpdateValuesIn,
    QuotaLimits,
    SheetsEmulatorConfig,
    SheetsStats,
    SpreadsheetSeed,
    SpreadsheetSummary,
    ValueRangeIn,
)
from .quota import QuotaMeter
from .store import Sheet, Spreadsheet, has_typed, rtrim, user_entered

_NONE = type(None)
_CELL_TYPES = frozenset({str, int, float, bool, _NONE})
RENDER_OPTIONS = ("FORMATTED_VALUE", "UNFORMATTED_VALUE", "FORMULA")
DIMENSIONS = ("ROWS", "COLUMNS")


def check_render(value: str | None, name: str = "value_render_option") -> str:
    if value is None or value == "":
        return "FORMATTED_VALUE"
    if value not in RENDER_OPTIONS:
        raise bad_request(
            f"Invalid value at '{name}' (type.googleapis.com/google.apps.sheets.v4.ValueRenderOption), \"{value}\""
        )
    return value


def check_dimension(value: str | None) -> str:
    if value is None or value in ("", "DIMENSION_UNSPECIFIED"):
        return "ROWS"
    if value not in DIMENSIONS:
        raise bad_request(
            f"Invalid value at 'major_dimension' (type.googleapis.com/google.apps.sheets.v4.Dimension), \"{value}\""
        )
    return value


def check_input_option(value: str | None) -> str:
    if value is None or value == "" or value == "INPUT_VALUE_OPTION_UNSPECIFIED":
        raise bad_request("'valueInputOption' is required but not specified")
    if value not in ("RAW", "USER_ENTERED"):
        raise bad_request(
            f"Invalid value at 'value_input_option' (type.googleapis.com/google.apps.sheets.v4.ValueInputOption), \"{value}\""
        )
    return value


def render_json(body: Any) -> bytes:
    """Compact UTF-8 JSON, as sent on the wire."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def flag(value: str | bool | None) -> bool:
    if isinstance(value, bool):
        return value
    return value is not None and value.lower() in ("true", "1")


class SheetsEmulator:
    """All emulator state. Methods are called from the event loop only (no locking needed)."""

    def __init__(self, config: SheetsEmulatorConfig) -> None:
        self.config = config
        self.spreadsheets: dict[str, Spreadsheet] = {}
        self.quota = QuotaMeter(config.limits.model_copy(), config.project_number)
        self.faults = FaultInjector(config.default_timeout_fault_s)
        self.stats = SheetsStats()
        self._versions = itertools.count(1)
        # serialised read responses keyed by (call, spreadsheet, version, ranges, options); any write
        # bumps the spreadsheet's version, so a poller re-reading an unchanged 100k-row sheet is served
        # from here without re-encoding
        self._read_cache: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        for seed in config.spreadsheets:
            self.load(seed)

    _READ_CACHE_ENTRIES = 4

    def _touch(self, book: Spreadsheet) -> None:
        book.version = next(self._versions)

    def _cached(self, key: tuple[Any, ...], build: Any) -> bytes:
        data = self._read_cache.get(key)
        if data is None:
            data = render_json(build())
            self._read_cache[key] = data
            while len(self._read_cache) > self._READ_CACHE_ENTRIES:
                self._read_cache.popitem(last=False)
        else:
            self._read_cache.move_to_end(key)
        return data

    # -- control ----------------------------------------------------------------------------------
    def reset(self) -> None:
        self.spreadsheets.clear()
        self._read_cache.clear()
        self.quota.set_limits(self.config.limits.model_copy())
        self.quota.reset()
        self.faults.clear()
        self.stats = SheetsStats()
        for seed in self.config.spreadsheets:
            self.load(seed)

    def set_limits(self, limits: QuotaLimits) -> QuotaLimits:
        self.quota.set_limits(limits)
        self.quota.reset()
        return limits

    def load(self, seed: SpreadsheetSeed) -> SpreadsheetSummary:
        """Create or replace a spreadsheet from rows of values (the fast path for big demo sheets)."""
        book = Spreadsheet(seed.spreadsheet_id, seed.title)
        for title, values in seed.sheets.items():
            rows: list[list[Any]] = []
            typed: set[int] = set()
            width = 0
            convert = seed.value_input_option == "USER_ENTERED"
            for i, row in enumerate(values):
                types = set(map(type, row))
                if not types <= _CELL_TYPES:
                    bad = next(v for v in row if type(v) not in _CELL_TYPES)
                    raise bad_request(f"sheet {title!r} row {i + 1}: unsupported cell value {bad!r}")
                if convert:
                    row = [user_entered(v) if type(v) is str else v for v in row]
                    types = set(map(type, row))
                if _NONE in types:
                    row = ["" if v is None else v for v in row]
                    types.discard(_NONE)
                    types.add(str)
                if row and row[-1] == "":
                    rtrim(row)
                if len(row) > width:
                    width = len(row)
                if types - {str}:
                    typed.add(i)
                rows.append(row)
            while rows and not rows[-1]:
                rows.pop()
            sheet = book.add_sheet(title, max(seed.min_rows, len(rows)), max(seed.min_columns, width))
            sheet.rows = rows
            sheet.typed_rows = {i for i in typed if i < len(rows)}
        if not book.sheets:
            book.add_sheet("Sheet1", seed.min_rows, seed.min_columns)
        if book.cells > self.config.max_cells_per_spreadsheet:
            raise bad_request(
                "This action would increase the number of cells in the workbook above the limit of "
                f"{self.config.max_cells_per_spreadsheet} cells."
            )
        self._touch(book)
        self.spreadsheets[seed.spreadsheet_id] = book
        return self.summary(book)

    @staticmethod
    def summary(book: Spreadsheet) -> SpreadsheetSummary:
        return SpreadsheetSummary(
            spreadsheet_id=book.spreadsheet_id,
            title=book.title,
            sheets={s.title: len(s.rows) for s in book.sheets},
        )

    def delete(self, spreadsheet_id: str) -> None:
        self.get(spreadsheet_id)
        del self.spreadsheets[spreadsheet_id]

    # -- admission (every Sheets API call) --------------------------------------------------------
    async def admit(self, kind: Literal["read", "write"], method: str, user: str | None) -> None:
        """Apply faults, authentication and quotas to one API call; raise the error it must answer."""
        stats = self.stats
        stats.requests += 1
        stats.by_method[method] = stats.by_method.get(method, 0) + 1
        try:
            await self.faults.apply()
        except SheetsApiError:
            stats.faults_injected += 1
            raise
        if user is None:
            if self.config.require_auth:
                stats.unauthenticated += 1
                raise SheetsApiError(401)
            user = "anonymous"
        try:
            self.quota.admit(kind, user)
        except SheetsApiError:
            stats.throttled += 1
            if kind == "read":
                stats.throttled_reads += 1
            else:
                stats.throttled_writes += 1
            raise
        if kind == "read":
            stats.reads += 1
        else:
            stats.writes += 1

    # -- spreadsheets -----------------------------------------------------------------------------
    def get(self, spreadsheet_id: str) -> Spreadsheet:
        book = self.spreadsheets.get(spreadsheet_id)
        if book is None:
            raise SheetsApiError(404)
        return book

    def spreadsheet_get(
        self, spreadsheet_id: str, *, include_grid_data: bool, ranges: list[str], fields: str | None
    ) -> dict[str, Any]:
        book = self.get(spreadsheet_id)
        body = book.metadata()
        if ranges or include_grid_data:
            wanted: dict[int, list[tuple[int, int, int, int]]] = {}
            order: list[Sheet] = []
            if ranges:
                for text in ranges:
                    sheet, box = book.resolve(text)
                    if sheet.sheet_id not in wanted:
                        wanted[sheet.sheet_id] = []
                        order.append(sheet)
                    wanted[sheet.sheet_id].append(sheet.clip(box, label=text))
            else:
                for sheet in book.sheets:
                    wanted[sheet.sheet_id] = [(0, 0, sheet.row_count, sheet.col_count)]
                    order.append(sheet)
            sheets_out = []
            for sheet in order:
                entry: dict[str, Any] = {"properties": sheet.properties()}
                if include_grid_data:
                    entry["data"] = [sheet.grid_data(*b) for b in wanted[sheet.sheet_id]]
                sheets_out.append(entry)
            body["sheets"] = sheets_out
        if fields:
            try:
                body = apply_fields(body, parse_fields(fields))
            except FieldMaskError as exc:
                raise bad_request(str(exc)) from exc
        return body

    # -- values -----------------------------------------------------------------------------------
    def values_get(self, spreadsheet_id: str, text: str, *, major: str, render: str) -> bytes:
        """The serialised ValueRange (cached until the spreadsheet next changes)."""
        book = self.get(spreadsheet_id)
        key = ("get", spreadsheet_id, book.version, text, major, render)
        return self._cached(key, lambda: book.get_values(text, major=major, render=render))

    def values_batch_get(self, spreadsheet_id: str, ranges: list[str], *, major: str, render: str) -> bytes:
        book = self.get(spreadsheet_id)
        key = ("batchGet", spreadsheet_id, book.version, tuple(ranges), major, render)
        return self._cached(
            key,
            lambda: {
                "spreadsheetId": spreadsheet_id,
                "valueRanges": [book.get_values(r, major=major, render=render) for r in ranges],
            },
        )

    def values_update(
        self,
        spreadsheet_id: str,
        text: str,
        body: ValueRangeIn,
        *,
        input_option: str,
        include_values: bool,
        response_render: str,
    ) -> dict[str, Any]:
        book = self.get(spreadsheet_id)
        if body.range is not None and book.resolve(body.range) != book.resolve(text):
            raise bad_request(f"Requested range [{text}] and body range [{body.range}] do not match.")
        major = check_dimension(body.majorDimension)
        sheet, r0, c0, data = book.prepare_write(
            text,
            body.values,
            major=major,
            input_option=input_option,
            max_cells=self.config.max_cells_per_spreadsheet,
        )
        self._touch(book)
        result = book.apply_write(sheet, r0, c0, data)
        out = result.as_response(spreadsheet_id)
        if include_values:
            out["updatedData"] = book.get_values(result.updated_range, major=major, render=response_render)
        return out

    def values_batch_update(self, spreadsheet_id: str, body: BatchUpdateValuesIn) -> dict[str, Any]:
        book = self.get(spreadsheet_id)
        input_option = check_input_option(body.valueInputOption)
        render = check_render(body.responseValueRenderOption, "response_value_render_option")
        prepared = []
        for item in body.data:
            if item.range is None:
                raise bad_request("Invalid data[].range: a range is required")
            major = check_dimension(item.majorDimension)
            prepared.append(
                (
                    major,
                    book.prepare_write(
                        item.range,
                        item.values,
                        major=major,
                        input_option=input_option,
                        max_cells=self.config.max_cells_per_spreadsheet,
                    ),
                )
            )
        self._touch(book)
        responses = []
        totals = {"rows": 0, "cols": 0, "cells": 0}
        touched_sheets: set[int] = set()
        for major, (sheet, r0, c0, data) in prepared:
            result = book.apply_write(sheet, r0, c0, data)
            entry = result.as_response(spreadsheet_id)
            if flag(body.includeValuesInResponse):
                entry["updatedData"] = book.get_values(result.updated_range, major=major, render=render)
            responses.append(entry)
            totals["rows"] += result.rows
            totals["cols"] += result.columns
            totals["cells"] += result.cells
            if result.cells:
                touched_sheets.add(sheet.sheet_id)
        return {
            "spreadsheetId": spreadsheet_id,
            "totalUpdatedRows": totals["rows"],
            "totalUpdatedColumns": totals["cols"],
            "totalUpdatedCells": totals["cells"],
            "totalUpdatedSheets": len(touched_sheets),
            "responses": responses,
        }

    def values_append(
        self,
        spreadsheet_id: str,
        text: str,
        body: ValueRangeIn,
        *,
        input_option: str,
        insert_data_option: str | None,
        include_values: bool,
        response_render: str,
    ) -> dict[str, Any]:
        book = self.get(spreadsheet_id)
        if insert_data_option not in (None, "", "OVERWRITE", "INSERT_ROWS"):
            raise bad_request(
                "Invalid value at 'insert_data_option' "
                f'(type.googleapis.com/google.apps.sheets.v4.InsertDataOption), "{insert_data_option}"'
            )
        major = check_dimension(body.majorDimension)
        self._touch(book)
        table_range, result, _sheet = book.append(
            text,
            body.values,
            major=major,
            input_option=input_option,
            insert_rows=insert_data_option == "INSERT_ROWS",
            max_cells=self.config.max_cells_per_spreadsheet,
        )
        updates = result.as_response(spreadsheet_id)
        if include_values:
            updates["updatedData"] = book.get_values(
                result.updated_range, major=major, render=response_render
            )
        out: dict[str, Any] = {"spreadsheetId": spreadsheet_id}
        if table_range is not None:
            out["tableRange"] = table_range
        out["updates"] = updates
        return out

    def values_clear(self, spreadsheet_id: str, text: str) -> dict[str, Any]:
        book = self.get(spreadsheet_id)
        self._touch(book)
        return {"spreadsheetId": spreadsheet_id, "clearedRange": book.clear(text)}

    def values_batch_clear(self, spreadsheet_id: str, ranges: list[str]) -> dict[str, Any]:
        book = self.get(spreadsheet_id)
        for text in ranges:
            book.resolve(text)
        self._touch(book)
        return {"spreadsheetId": spreadsheet_id, "clearedRanges": [book.clear(t) for t in ranges]}

    # -- spreadsheets.batchUpdate (the structural requests gspread issues) ------------------------
    def batch_update(self, spreadsheet_id: str, body: BatchUpdateSpreadsheetIn) -> dict[str, Any]:
        """Apply structural requests atomically: on any error the spreadsheet is left unchanged."""
        book = self.get(spreadsheet_id)
        self._touch(book)
        snapshot = (
            book.title,
            book.next_sheet_id,
            [dataclasses.replace(s, rows=list(s.rows), typed_rows=set(s.typed_rows)) for s in book.sheets],
        )
        replies: list[dict[str, Any]] = []
        try:
            for i, request in enumerate(body.requests):
                if len(request) != 1:
                    raise bad_request(f"Invalid requests[{i}]: exactly one request kind is required")
                ((kind, args),) = request.items()
                replies.append(self._structural(book, i, kind, args or {}))
        except SheetsApiError:
            book.title, book.next_sheet_id, book.sheets = snapshot
            raise
        out: dict[str, Any] = {"spreadsheetId": spreadsheet_id, "replies": replies}
        if flag(body.includeSpreadsheetInResponse):
            out["updatedSpreadsheet"] = book.metadata()
        return out

    def _structural(self, book: Spreadsheet, i: int, kind: str, args: dict[str, Any]) -> dict[str, Any]:
        if kind == "addSheet":
            props = args.get("properties", {})
            grid = props.get("gridProperties", {})
            title = props.get("title") or f"Sheet{len(book.sheets) + 1}"
            sheet = book.add_sheet(
                title, int(grid.get("rowCount", 1000)), int(grid.get("columnCount", 26)), props.get("sheetId")
            )
            book.check_growth(sheet, sheet.row_count, sheet.col_count, self.config.max_cells_per_spreadsheet)
            if "index" in props:
                book.sheets.remove(sheet)
                book.sheets.insert(int(props["index"]), sheet)
                for n, s in enumerate(book.sheets):
                    s.index = n
            return {"addSheet": {"properties": sheet.properties()}}
        if kind == "deleteSheet":
            book.delete_sheet(int(args.get("sheetId", -1)))
            return {}
        if kind == "updateSpreadsheetProperties":
            props = args.get("properties", {})
            if "title" in props and _selected(args.get("fields"), "title"):
                book.title = str(props["title"])
            return {}
        if kind == "updateSheetProperties":
            props = args.get("properties", {})
            sheet = book.sheet_by_id(int(props.get("sheetId", 0)))
            mask = args.get("fields")
            if "title" in props and _selected(mask, "title"):
                other = book.find_sheet(props["title"])
                if other is not None and other is not sheet:
                    raise bad_request(
                        f'Invalid requests[{i}].updateSheetProperties: A sheet with the name "{props["title"]}" already exists.'
                    )
                sheet.title = str(props["title"])
            grid = props.get("gridProperties", {})
            rows = (
                int(grid["rowCount"])
                if "rowCount" in grid and _selected(mask, "gridProperties.rowCount")
                else sheet.row_count
            )
            cols = (
                int(grid["columnCount"])
                if "columnCount" in grid and _selected(mask, "gridProperties.columnCount")
                else sheet.col_count
            )
            if (rows, cols) != (sheet.row_count, sheet.col_count):
                book.check_growth(sheet, rows, cols, self.config.max_cells_per_spreadsheet)
                sheet.resize(rows, cols)
            return {}
        if kind == "appendDimension":
            sheet = book.sheet_by_id(int(args.get("sheetId", 0)))
            length = int(args.get("length", 0))
            if args.get("dimension") == "COLUMNS":
                book.check_growth(
                    sheet, sheet.row_count, sheet.col_count + length, self.config.max_cells_per_spreadsheet
                )
                sheet.col_count += length
            else:
                book.check_growth(
                    sheet, sheet.row_count + length, sheet.col_count, self.config.max_cells_per_spreadsheet
                )
                sheet.row_count += length
            return {}
        if kind in ("insertDimension", "deleteDimension"):
            rng = args.get("range", {})
            sheet = book.sheet_by_id(int(rng.get("sheetId", 0)))
            start, end = int(rng.get("startIndex", 0)), int(rng.get("endIndex", 0))
            if end <= start:
                raise bad_request(f"Invalid requests[{i}].{kind}: endIndex must be greater than startIndex")
            n = end - start
            columns = rng.get("dimension") == "COLUMNS"
            if kind == "insertDimension":
                if columns:
                    book.check_growth(
                        sheet, sheet.row_count, sheet.col_count + n, self.config.max_cells_per_spreadsheet
                    )
                    sheet.rows = [
                        rtrim(r[:start] + [""] * n + r[start:]) if len(r) > start else r for r in sheet.rows
                    ]
                    sheet.col_count += n
                else:
                    book.check_growth(
                        sheet, sheet.row_count + n, sheet.col_count, self.config.max_cells_per_spreadsheet
                    )
                    sheet.insert_rows(start, n)
                return {}
            if columns:
                sheet.rows = [rtrim(r[:start] + r[end:]) if len(r) > start else r for r in sheet.rows]
                sheet.col_count = max(1, sheet.col_count - n)
            else:
                del sheet.rows[start:end]
                sheet.row_count = max(1, sheet.row_count - n)
            sheet.typed_rows = {k for k, r in enumerate(sheet.rows) if has_typed(r)}
            while sheet.rows and not sheet.rows[-1]:
                sheet.rows.pop()
            return {}
        raise bad_request(
            f"Invalid requests[{i}]: request kind '{kind}' is not supported by the Sheets emulator"
        )


def _selected(mask: str | None, path: str) -> bool:
    if mask is None or mask.strip() in ("", "*"):
        return True
    parts = [p.strip() for p in mask.split(",")]
    return any(path == p or path.startswith(p + ".") for p in parts)
