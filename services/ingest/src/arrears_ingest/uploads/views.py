"""`POST /ingest/upload`: a CSV or XLSX file as the raw request body. No business logic here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from arrears_shared.auth import Principal, requires
from arrears_shared.service import Context
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from ..runs.audit import audit_run
from ..runs.models import RunSummary
from ..runs.service import UploadIngestor
from ..sources.files import XLSX_MEDIA, UnreadableFile, read_upload


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"upload larger than {limit} bytes (ARREARS_INGEST_UPLOAD_MAX_BYTES)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"upload larger than {limit} bytes (ARREARS_INGEST_UPLOAD_MAX_BYTES)")
        chunks.append(chunk)
    return b"".join(chunks)


def router(get_context: Callable[[], Context]) -> APIRouter:
    r = APIRouter(prefix="/ingest", tags=["ingest"])

    @r.post(
        "/upload",
        response_model=RunSummary,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "text/csv": {"schema": {"type": "string", "format": "binary"}},
                    XLSX_MEDIA: {"schema": {"type": "string", "format": "binary"}},
                },
            }
        },
        responses={
            400: {"description": "not a readable CSV/XLSX file"},
            413: {"description": "too large"},
            422: {"description": "the file has no usable header row (the failed run is returned)"},
        },
    )
    async def upload(
        request: Request,
        filename: str | None = Query(None, max_length=255, description="Original file name (type hint)"),
        mode: Literal["merge", "replace"] = Query(
            "merge",
            description="merge: create/update the file's accounts only; replace: the file is the whole "
            "master sheet (accounts absent from it are removed)",
        ),
        worksheet: str | None = Query(None, max_length=100, description="XLSX worksheet (default: first)"),
        who: Principal = Depends(requires("ingest.run")),
    ) -> RunSummary | JSONResponse:
        """Ingest a CSV/XLSX export of the PME master sheet: same columns, validation and change
        detection as the sheet. Works while the sheet is unavailable."""
        ctx = get_context()
        ing = ctx.extra.get("upload_ingestor")
        if not isinstance(ing, UploadIngestor):
            raise HTTPException(503, "ingest is starting")
        data = await read_body(request, ctx.settings.ingest_upload_max_bytes)  # type: ignore[attr-defined]
        try:
            _, values = read_upload(
                data, filename=filename, content_type=request.headers.get("content-type"), worksheet=worksheet
            )
        except UnreadableFile as e:
            raise HTTPException(400, str(e)) from None
        summary = await ing.run("api", values, mode)
        await audit_run(ctx, who, "ingest.upload", summary, filename=filename, mode=mode, bytes=len(data))
        if summary.status == "failed":
            return JSONResponse(summary.model_dump(mode="json"), status_code=422)
        return summary

    return r
