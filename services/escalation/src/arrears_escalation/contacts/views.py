"""Manual contacts: record one (`POST /accounts/{account_id}/contacts`) or import the manual tracking sheet
(`POST /contacts/import`). Thin: roles, bodies, status codes."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from arrears_shared.auth import Principal, requires
from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response

from ..audit.service import append
from ..deps import Deps
from .models import ContactRecorded, ImportResult, RecordContact, RowRecorded, RowRejected
from .service import ContactRefused, account_facts, check_time, record_contact
from .sheet import XLSX_MEDIA, UnreadableSheet, account_ids, load_table, read_rows

AccountId = Path(min_length=1, max_length=64)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    too_big = f"file larger than {limit} bytes (ARREARS_ESCALATION_CONTACTS_IMPORT_MAX_BYTES)"
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, too_big)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, too_big)
        chunks.append(chunk)
    return b"".join(chunks)


def make_router(deps: Deps, max_bytes: int, max_rows: int) -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(tags=["contacts"])
        work = Depends(requires("accounts.work"))

        @router.post(
            "/accounts/{account_id}/contacts",
            response_model=ContactRecorded,
            status_code=201,
            responses={200: {"model": ContactRecorded, "description": "already recorded: nothing changed"}},
        )
        async def record(
            body: RecordContact, response: Response, account_id: str = AccountId, who: Principal = work
        ) -> ContactRecorded:
            """Record a contact a person made outside the platform (a call, a letter, a visit, a message from
            their own phone): on the timeline, in the KPIs, and for the segmenter, which moves the next
            automated step after a contact that reached the customer. Sending the same contact again (same
            `contact_id`, or the same details) records nothing new."""
            now = deps.clock.now()
            async with get_context().transaction() as tx:
                facts = (await account_facts(tx.conn, [account_id])).get(account_id)
                try:
                    check_time(body, facts, now)
                except ContactRefused as e:
                    raise HTTPException(422, str(e)) from None
                got = await record_contact(tx, who, account_id, body, now)
            if not got.recorded:
                response.status_code = 200
            return got

        @router.post(
            "/contacts/import",
            response_model=ImportResult,
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {
                        "text/csv": {"schema": {"type": "string", "format": "binary"}},
                        XLSX_MEDIA: {"schema": {"type": "string", "format": "binary"}},
                    },
                }
            },
            responses={400: {"description": "not a readable sheet"}, 413: {"description": "too large"}},
        )
        async def import_sheet(
            request: Request,
            filename: str | None = Query(None, max_length=255, description="Original file name (type hint)"),
            tz: str = Query("UTC", max_length=64, description="IANA zone of times written without an offset"),
            who: Principal = work,
        ) -> ImportResult:
            """Import the manual tracking sheet (the "Manual contacts" sheet of the console's working-set
            export, filled in by hand; CSV or XLSX as the request body). Each good row is recorded as by
            `POST /accounts/{account_id}/contacts` with an id derived from its content, so importing the same
            file again records nothing new; each bad row is listed with its row number and reason, and the
            good rows go through."""
            try:
                zone = ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                raise HTTPException(422, f"unknown time zone {tz!r}") from None
            data = await _read_body(request, max_bytes)
            try:
                table = load_table(data, filename, request.headers.get("content-type"), max_rows)
                ids = account_ids(table)
            except UnreadableSheet as e:
                raise HTTPException(413 if "rows" in str(e) else 400, str(e)) from None
            ctx = get_context()
            async with ctx.engine.connect() as conn:
                facts = await account_facts(conn, ids)
            n, good, bad = read_rows(table, tz=zone, facts=facts)
            now = deps.clock.now()
            done: list[RowRecorded] = []
            for row in good:
                try:
                    check_time(row.body, facts.get(row.account_id), now)
                except ContactRefused as e:
                    bad.append(
                        RowRejected(
                            row=row.row, column="account_id" if "unknown" in str(e) else "when", reason=str(e)
                        )
                    )
                    continue
                async with ctx.transaction() as tx:  # one row, one transaction: a crash loses no other row
                    got = await record_contact(tx, who, row.account_id, row.body, now)
                done.append(
                    RowRecorded(
                        row=row.row,
                        account_id=row.account_id,
                        contact_id=got.contact_id,
                        recorded=got.recorded,
                    )
                )
            bad.sort(key=lambda b: b.row)
            result = ImportResult(
                filename=filename,
                rows=n,
                recorded=sum(d.recorded for d in done),
                already_recorded=sum(not d.recorded for d in done),
                rejected=len(bad),
                good=done,
                bad=bad,
            )
            async with ctx.transaction() as tx:
                await append(
                    tx.conn,
                    actor=who.name,
                    role=who.role,
                    action="contacts.import",
                    entity="import",
                    entity_id=filename or "upload",
                    after={
                        k: v for k, v in result.model_dump(mode="json").items() if k not in ("good", "bad")
                    }
                    | {"bytes": len(data), "rejected_rows": [b.row for b in bad]},
                    at=now,
                )
            return result

        return router

    return factory
