"""Manual mode (a long outage): export the working set to work by hand, record the contacts people make, and
import the manual tracking sheet back. The export reads the console's own read models (and asks the
segmenter for next steps, going on without them when it cannot answer); recording and importing are calls
to escalation as the signed-in person (it audits them and tells the segmenter)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from uuid import uuid4
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from arrears_shared.audit import record
from arrears_shared.auth import Principal, requires
from arrears_shared.money import to_minor
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from ..readmodels.views import today_utc
from ..web.pages.common import ContextGetter, back, upstreams
from ..web.templating import env, page
from ..web.upstream import UpstreamError
from . import rows
from .columns import CHANNELS, CONTACT_HISTORY, DIRECTIONS, MANUAL_CONTACTS, OUTCOMES, SHEETS, WORKING_SET
from .files import XlsxBook, csv_stream

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
IMPORT_MAX_BYTES = (
    5 * 1024 * 1024
)  # escalation has its own bound (ARREARS_ESCALATION_CONTACTS_IMPORT_MAX_BYTES)


async def _empty() -> Any:
    return
    yield  # an async generator with no rows


def _url_sized(ids: list[str], budget: int = 6000) -> list[list[str]]:
    """The ids in groups whose query string stays well under servers' request-line limits (8-16 KiB)."""
    groups: list[list[str]] = [[]]
    used = 0
    for i in ids:
        cost = len(i) + 12  # "&account_id=" and a little percent-encoding
        if groups[-1] and used + cost > budget:
            groups.append([])
            used = 0
        groups[-1].append(i)
        used += cost
    return [g for g in groups if g]


def router(get_context: ContextGetter) -> APIRouter:
    r = APIRouter(tags=["web"], include_in_schema=False)
    exporter = Depends(requires("exports.personal"))
    worker = Depends(requires("accounts.work"))

    def segmenter_for(request: Request, who: Principal) -> rows.Segmenter:
        up = upstreams(get_context())

        async def ask(ids: list[str]) -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {}
            for some in _url_sized(ids):
                found = await up.call(
                    request,
                    who,
                    "segmenter",
                    "GET",
                    "/next-steps",
                    params={"account_id": some, "limit": 5000},
                )
                for s in found or []:
                    out.setdefault(s["account_id"], s)  # one pending step per account; the first if more
            return out

        return rows.Segmenter(ask)

    @r.get("/exports/working-set")
    async def working_set(
        request: Request,
        format: Literal["csv", "xlsx"] = Query(
            "xlsx", description="csv: one sheet (`sheet`); xlsx: all three"
        ),
        sheet: Literal["working-set", "contact-history", "manual-contacts"] = Query("working-set"),
        all: bool = Query(False, description="Every account, not only those in arrears"),
        who: Principal = exporter,
    ) -> Response:
        """The working set to work by hand during a long outage (docs/console.md, "Manual mode")."""
        ctx = get_context()
        today, now = today_utc(), datetime.now(UTC)
        stamp = now.strftime("%Y%m%dT%H%MZ")
        seg = segmenter_for(request, who)
        total = await rows.count(ctx.engine, ctx.schema, today, all)
        export_id = str(uuid4())

        async def audit(extra: dict[str, Any]) -> None:
            async with ctx.transaction() as tx:
                await record(
                    tx.conn,
                    ctx.schema,
                    who,
                    "export.working_set",
                    "export",
                    export_id,
                    after={"format": format, "all": all, "accounts": total, "masked": not who.sees_pii}
                    | extra,
                )

        if format == "csv":
            header, source = {
                "working-set": (
                    WORKING_SET,
                    lambda: rows.working_set(ctx.engine, ctx.schema, who, today, all, seg),
                ),
                "contact-history": (
                    CONTACT_HISTORY,
                    lambda: rows.contact_history(ctx.engine, ctx.schema, who, today, now, all),
                ),
                "manual-contacts": (MANUAL_CONTACTS, _empty),
            }[sheet]
            # the rows are read as the file streams: the entry records the accounts in scope when it began
            await audit({"sheet": sheet, "rows": total if sheet == "working-set" else None})
            return StreamingResponse(
                csv_stream(header, source()),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="working-set-{sheet}-{stamp}.csv"'},
            )
        book = XlsxBook()
        ws = book.sheet(SHEETS["working-set"], WORKING_SET)
        n_accounts = 0
        async for row in rows.working_set(ctx.engine, ctx.schema, who, today, all, seg):
            book.append(ws, row)
            n_accounts += 1
        hist = book.sheet(SHEETS["contact-history"], CONTACT_HISTORY)
        n_history = 0
        async for row in rows.contact_history(ctx.engine, ctx.schema, who, today, now, all):
            book.append(hist, row)
            n_history += 1
        book.manual_contacts(SHEETS["manual-contacts"])
        await audit({"rows": n_accounts, "contact_history_rows": n_history, "segmenter": seg.note or "ok"})
        return StreamingResponse(
            book.stream(),
            media_type=XLSX,
            headers={"Content-Disposition": f'attachment; filename="working-set-{stamp}.xlsx"'},
        )

    @r.get("/manual", response_class=HTMLResponse)
    async def manual(request: Request, who: Principal = worker) -> HTMLResponse:
        return page(request, who, "manual.html", result=None, problem="")

    @r.post("/manual/import", response_class=HTMLResponse)
    async def manual_import(
        request: Request,
        file: UploadFile = File(...),
        tz: str = Form("UTC", max_length=64),
        who: Principal = worker,
    ) -> HTMLResponse:
        data = await file.read(IMPORT_MAX_BYTES + 1)
        if len(data) > IMPORT_MAX_BYTES:
            return page(
                request, who, "manual.html", status=413, result=None, problem="the file is larger than 5 MiB"
            )
        name = (file.filename or "upload").rsplit("/", 1)[-1][:255]
        kind = XLSX if name.lower().endswith(".xlsx") else "text/csv"
        try:
            result = await upstreams(get_context()).call(
                request, who, "escalation", "POST", "/contacts/import",
                params={"filename": name, "tz": tz}, content=data, content_type=kind, timeout_s=120,
            )  # fmt: skip
        except UpstreamError as e:
            return page(request, who, "manual.html", status=e.status if e.status < 500 else 502, result=None,
                        problem=f"import refused: {e.detail}")  # fmt: skip
        return page(request, who, "manual.html", result=result, problem="")

    @r.post("/accounts/{account_id}/contact")
    async def record_contact(
        request: Request,
        account_id: str,
        channel: str = Form(..., max_length=20),
        direction: str = Form("outbound", max_length=20),
        outcome: str = Form(..., max_length=20),
        contacted_at: str = Form(
            ..., max_length=40, description="datetime-local, in UTC unless an offset is given"
        ),
        tz: str = Form("UTC", max_length=64),
        note: str = Form("", max_length=2000),
        promise_date: date | None = Form(None),
        promise_amount: str = Form("", max_length=30),
        currency: str = Form("USD", max_length=3),
        who: Principal = worker,
    ) -> Response:
        here = f"/accounts/{account_id}"
        try:
            zone = ZoneInfo(tz.strip() or "UTC")
        except (ZoneInfoNotFoundError, ValueError, OSError):
            return back(here, error=f"unknown time zone: {tz}")
        try:
            when = datetime.fromisoformat(contacted_at)
        except ValueError:
            return back(here, error=f"not a date and time: {contacted_at}")
        body: dict[str, Any] = {
            "channel": channel,
            "direction": direction,
            "outcome": outcome,
            "contacted_at": (when if when.tzinfo else when.replace(tzinfo=zone)).isoformat(),
            "note": note,
        }
        if promise_date is not None:
            body["promise_date"] = promise_date.isoformat()
        if promise_amount.strip():
            try:
                body["promise_amount_minor"] = to_minor(
                    Decimal(promise_amount.replace(",", "").strip()), currency
                )
            except (InvalidOperation, ValueError):
                return back(here, error=f"not an amount in {currency}: {promise_amount}")
        try:
            got = await upstreams(get_context()).call(
                request, who, "escalation", "POST", f"{here}/contacts", json=body
            )
        except UpstreamError as e:
            return back(here, error=f"contact refused: {e.detail}")
        if got and not got.get("recorded", True):
            return back(here, flash="this contact was already recorded; nothing changed")
        return back(here, flash=f"{channel} contact recorded; the sequence counts it within seconds")

    return r


# the choices of the "Record a contact" form (account page) and of the manual tracking sheet
env.globals["manual_contact_choices"] = {"channels": CHANNELS, "directions": DIRECTIONS, "outcomes": OUTCOMES}
