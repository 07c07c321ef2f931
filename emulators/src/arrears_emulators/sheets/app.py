"""Google Sheets API v4 emulator (the subset gspread 6 uses) with quotas, faults and a control API.

Sheets API (base ``/v4/spreadsheets``; errors use Google's ``{"error": {code, message, status}}`` body):

* ``GET  /{id}`` (``includeGridData``, ``ranges``, ``fields``) — spreadsheets.get
* ``POST /{id}:batchUpdate`` — addSheet, deleteSheet, updateSheetProperties, updateSpreadsheetProperties,
  appendDimension, insertDimension, deleteDimension
* ``GET  /{id}/values/{range}``, ``GET /{id}/values:batchGet`` — reads (``majorDimension``,
  ``valueRenderOption``, ``dateTimeRenderOption`` accepted)
* ``PUT  /{id}/values/{range}``, ``POST /{id}/values:batchUpdate`` — writes (``valueInputOption`` required)
* ``POST /{id}/values/{range}:append`` (``insertDataOption``), ``POST /{id}/values/{range}:clear``,
  ``POST /{id}/values:batchClear``

Control API (never throttled or faulted): ``POST /_emulator/reset``; ``GET|POST|DELETE /_emulator/faults``;
``GET /_emulator/stats``; ``GET|PUT /_emulator/limits``; ``POST|GET /_emulator/spreadsheets``,
``GET|DELETE /_emulator/spreadsheets/{id}``; ``GET /_emulator/health``.

The user identity for per-user quotas is the ``Authorization: Bearer`` token (or the ``key`` parameter).
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import unquote

from fastapi import FastAPI, Query, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from .errors import SheetsApiError, bad_request
from .models import (
    BatchClearValuesIn,
    BatchUpdateSpreadsheetIn,
    BatchUpdateValuesIn,
    FaultSpec,
    FaultState,
    QuotaLimits,
    SheetsEmulatorConfig,
    SheetsStats,
    SpreadsheetDump,
    SpreadsheetSeed,
    SpreadsheetSummary,
    ValueRangeIn,
)
from .service import SheetsEmulator, check_dimension, check_input_option, check_render, flag, render_json

__all__ = ["create_app"]

_API = "/v4/spreadsheets"
_MEDIA = "application/json; charset=UTF-8"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(content=render_json(body), status_code=status, media_type=_MEDIA, headers=headers)


def _user(request: Request) -> str | None:
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = request.query_params.get("key")
    return key or None


def _range_and_action(request: Request, spreadsheet_id: str) -> tuple[str, str | None]:
    """Recover ``{range}`` and the ``:append``/``:clear`` suffix from the still-encoded path.

    Clients percent-encode the range (gspread encodes ``:`` as ``%3A``), so a literal ``:`` after the
    range marks the custom method; a range sent with literal colons (``A1:B2``) still parses, because only
    a known method name is split off.
    """
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    text = raw.decode("latin-1")
    marker = "/values/"
    idx = text.find(marker, text.find(spreadsheet_id))
    rest = text[idx + len(marker) :]
    action: str | None = None
    head, sep, tail = rest.rpartition(":")
    if sep and tail in ("append", "clear"):
        rest, action = head, tail
    return unquote(rest), action


def create_app(config: SheetsEmulatorConfig | None = None) -> FastAPI:
    """Build the emulator app. State lives in the returned app (``app.state.emulator``)."""
    emu = SheetsEmulator(config or SheetsEmulatorConfig())
    app = FastAPI(title="Google Sheets API v4 emulator", version="0.1.0")
    app.state.emulator = emu

    @app.exception_handler(SheetsApiError)
    async def _api_error(request: Request, exc: SheetsApiError) -> Response:
        return _json(exc.body(), exc.code, exc.headers or None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        if request.url.path.startswith(_API):
            first = exc.errors()[0] if exc.errors() else {}
            where = ".".join(str(p) for p in first.get("loc", ()))
            return _json(
                bad_request(f"Invalid JSON payload received. {where}: {first.get('msg', '')}").body(), 400
            )
        return await request_validation_exception_handler(request, exc)

    async def admit(request: Request, kind: Literal["read", "write"], method: str) -> None:
        await emu.admit(kind, method, _user(request))

    # -- Sheets API ---------------------------------------------------------------------------------
    @app.get(_API + "/{spreadsheet_id}/values:batchGet")
    async def values_batch_get(
        request: Request,
        spreadsheet_id: str,
        ranges: list[str] = Query(default=[]),
        majorDimension: str | None = None,  # noqa: N803 - wire name
        valueRenderOption: str | None = None,  # noqa: N803
        dateTimeRenderOption: str | None = None,  # noqa: N803
    ) -> Response:
        await admit(request, "read", "spreadsheets.values.batchGet")
        data = emu.values_batch_get(
            spreadsheet_id,
            ranges,
            major=check_dimension(majorDimension),
            render=check_render(valueRenderOption),
        )
        return Response(content=data, media_type=_MEDIA)

    @app.post(_API + "/{spreadsheet_id}/values:batchUpdate")
    async def values_batch_update(
        request: Request, spreadsheet_id: str, body: BatchUpdateValuesIn
    ) -> Response:
        await admit(request, "write", "spreadsheets.values.batchUpdate")
        return _json(emu.values_batch_update(spreadsheet_id, body))

    @app.post(_API + "/{spreadsheet_id}/values:batchClear")
    async def values_batch_clear(request: Request, spreadsheet_id: str, body: BatchClearValuesIn) -> Response:
        await admit(request, "write", "spreadsheets.values.batchClear")
        return _json(emu.values_batch_clear(spreadsheet_id, body.ranges))

    @app.get(_API + "/{spreadsheet_id}/values/{range_text:path}")
    async def values_get(
        request: Request,
        spreadsheet_id: str,
        range_text: str,
        majorDimension: str | None = None,  # noqa: N803
        valueRenderOption: str | None = None,  # noqa: N803
        dateTimeRenderOption: str | None = None,  # noqa: N803
    ) -> Response:
        await admit(request, "read", "spreadsheets.values.get")
        text, _ = _range_and_action(request, spreadsheet_id)
        data = emu.values_get(
            spreadsheet_id,
            text,
            major=check_dimension(majorDimension),
            render=check_render(valueRenderOption),
        )
        return Response(content=data, media_type=_MEDIA)

    @app.put(_API + "/{spreadsheet_id}/values/{range_text:path}")
    async def values_update(
        request: Request,
        spreadsheet_id: str,
        range_text: str,
        body: ValueRangeIn,
        valueInputOption: str | None = None,  # noqa: N803
        includeValuesInResponse: str | None = None,  # noqa: N803
        responseValueRenderOption: str | None = None,  # noqa: N803
        responseDateTimeRenderOption: str | None = None,  # noqa: N803
    ) -> Response:
        await admit(request, "write", "spreadsheets.values.update")
        text, _ = _range_and_action(request, spreadsheet_id)
        out = emu.values_update(
            spreadsheet_id,
            text,
            body,
            input_option=check_input_option(valueInputOption),
            include_values=flag(includeValuesInResponse),
            response_render=check_render(responseValueRenderOption, "response_value_render_option"),
        )
        return _json(out)

    @app.post(_API + "/{spreadsheet_id}/values/{range_text:path}")
    async def values_append_or_clear(
        request: Request,
        spreadsheet_id: str,
        range_text: str,
        valueInputOption: str | None = None,  # noqa: N803
        insertDataOption: str | None = None,  # noqa: N803
        includeValuesInResponse: str | None = None,  # noqa: N803
        responseValueRenderOption: str | None = None,  # noqa: N803
    ) -> Response:
        text, action = _range_and_action(request, spreadsheet_id)
        if action is None:
            raise SheetsApiError(404, "Method not found.")
        await admit(request, "write", f"spreadsheets.values.{action}")
        if action == "clear":
            return _json(emu.values_clear(spreadsheet_id, text))
        raw = await request.body()
        body = ValueRangeIn.model_validate_json(raw) if raw else ValueRangeIn()
        out = emu.values_append(
            spreadsheet_id,
            text,
            body,
            input_option=check_input_option(valueInputOption),
            insert_data_option=insertDataOption,
            include_values=flag(includeValuesInResponse),
            response_render=check_render(responseValueRenderOption, "response_value_render_option"),
        )
        return _json(out)

    @app.post(_API + "/{spreadsheet_id}:batchUpdate")
    async def spreadsheet_batch_update(
        request: Request, spreadsheet_id: str, body: BatchUpdateSpreadsheetIn
    ) -> Response:
        await admit(request, "write", "spreadsheets.batchUpdate")
        return _json(emu.batch_update(spreadsheet_id, body))

    @app.get(_API + "/{spreadsheet_id}")
    async def spreadsheet_get(
        request: Request,
        spreadsheet_id: str,
        includeGridData: str | None = None,  # noqa: N803
        ranges: list[str] = Query(default=[]),
        fields: str | None = None,
    ) -> Response:
        await admit(request, "read", "spreadsheets.get")
        body = emu.spreadsheet_get(
            spreadsheet_id, include_grid_data=flag(includeGridData), ranges=ranges, fields=fields
        )
        return _json(body)

    # -- control API --------------------------------------------------------------------------------
    @app.get("/_emulator/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "emulator": "sheets"}

    @app.post("/_emulator/reset")
    async def reset() -> dict[str, bool]:
        emu.reset()
        return {"ok": True}

    @app.get("/_emulator/faults", response_model=FaultState)
    async def get_faults() -> FaultState:
        return emu.faults.state()

    @app.post("/_emulator/faults", response_model=FaultState)
    async def add_fault(spec: FaultSpec) -> FaultState:
        emu.faults.add(spec)
        return emu.faults.state()

    @app.delete("/_emulator/faults", response_model=FaultState)
    async def clear_faults() -> FaultState:
        emu.faults.clear()
        return emu.faults.state()

    @app.get("/_emulator/stats", response_model=SheetsStats)
    async def stats() -> SheetsStats:
        return emu.stats

    @app.get("/_emulator/limits", response_model=QuotaLimits)
    async def get_limits() -> QuotaLimits:
        return emu.quota.limits

    @app.put("/_emulator/limits", response_model=QuotaLimits)
    async def put_limits(limits: QuotaLimits) -> QuotaLimits:
        return emu.set_limits(limits)

    @app.post(
        "/_emulator/spreadsheets",
        status_code=201,
        response_model=SpreadsheetSummary,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": SpreadsheetSeed.model_json_schema()}},
            }
        },
    )
    async def create_spreadsheet(request: Request) -> Response:
        # validated straight from bytes: several times faster than FastAPI's parse-then-validate for
        # 100k-row sheets
        try:
            seed = SpreadsheetSeed.model_validate_json(await request.body())
        except ValueError as exc:
            return _json({"detail": str(exc)}, 422)
        return _json(emu.load(seed).model_dump(), 201)

    @app.get("/_emulator/spreadsheets", response_model=list[SpreadsheetSummary])
    async def list_spreadsheets() -> list[SpreadsheetSummary]:
        return [emu.summary(b) for b in emu.spreadsheets.values()]

    @app.get("/_emulator/spreadsheets/{spreadsheet_id}", response_model=SpreadsheetDump)
    async def dump_spreadsheet(spreadsheet_id: str) -> Response:
        book = emu.get(spreadsheet_id)
        return _json({"spreadsheet_id": book.spreadsheet_id, "title": book.title, "sheets": book.dump()})

    @app.delete("/_emulator/spreadsheets/{spreadsheet_id}", status_code=204)
    async def delete_spreadsheet(spreadsheet_id: str) -> Response:
        emu.delete(spreadsheet_id)
        return Response(status_code=204)

    return app
