"""JSON ops API over the read models (no business logic here)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Literal

from arrears_shared import paging
from arrears_shared.auth import Principal, requires
from arrears_shared.events import AgingBucket
from arrears_shared.isodate import IsoDate
from arrears_shared.service import Context
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from . import service
from .models import AccountList, AgingReport, DlqList, RejectList, Summary, Timeline
from .scores import ScoreView, score_of


def today_utc() -> date:
    return datetime.now(UTC).date()


def api_router(get_context: Callable[[], Context]) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["console"])

    reports = [Depends(requires("reports.read"))]
    pii = [Depends(requires("accounts.read"))]

    @router.get("/aging", response_model=AgingReport, dependencies=reports)
    async def aging(as_of: IsoDate | None = None) -> AgingReport:
        ctx = get_context()
        async with ctx.engine.connect() as conn:
            return await service.aging(conn, ctx.schema, as_of or today_utc())

    @router.get("/accounts", response_model=AccountList)
    async def accounts(
        bucket: AgingBucket | None = None,
        q: str | None = Query(
            None,
            max_length=100,
            description="Part of the account id or (with accounts.read) name, email or phone",
        ),
        status: str | None = Query(None, max_length=20),
        campaign: str | None = Query(None, max_length=64),
        band: Literal["low", "medium", "high"] | None = Query(
            None, description="Only accounts whose latest model score (account-scored) is in this band"
        ),
        limit: int = Query(100, ge=1, le=1000),
        as_of: IsoDate | None = None,
        who: Principal = Depends(requires("reports.read")),
    ) -> AccountList:
        """Accounts by days past due; without `accounts.read` (viewers) names are masked and `q` matches
        account ids only."""
        ctx = get_context()
        async with ctx.engine.connect() as conn:
            found = await service.accounts(
                conn,
                ctx.schema,
                as_of or today_utc(),
                bucket=bucket.value if bucket else None,
                q=q,
                limit=limit,
                names=who.sees_pii,
                status=status,
                campaign=campaign,
                band=band,
            )
        return found if who.sees_pii else service.mask_personal(found)

    @router.get("/accounts/{account_id}/score", response_model=ScoreView, dependencies=pii)
    async def account_score(account_id: str) -> ScoreView:
        """The account's latest model score with its top reasons (404: not scored yet)."""
        ctx = get_context()
        async with ctx.engine.connect() as conn:
            found = await score_of(conn, ctx.schema, account_id)
        if found is None:
            raise HTTPException(404, f"no score for account {account_id}")
        return found

    @router.get(
        "/accounts/{account_id}/timeline",
        response_model=Timeline,
        dependencies=pii,
        responses=paging.RESPONSES,
    )
    async def account_timeline(
        request: Request,
        response: Response,
        account_id: str,
        limit: int = Query(200, ge=1, le=2000),
        cursor: str | None = paging.CURSOR_QUERY,
    ) -> Timeline:
        ctx = get_context()
        async with ctx.engine.connect() as conn:
            found = await service.timeline(conn, ctx.schema, account_id, limit, cursor)
        paging.announce(request, response, found.next_cursor)
        return found

    @router.get("/timeline", response_model=Timeline, dependencies=pii, responses=paging.RESPONSES)
    async def recent_timeline(
        request: Request,
        response: Response,
        limit: int = Query(50, ge=1, le=1000),
        cursor: str | None = paging.CURSOR_QUERY,
    ) -> Timeline:
        ctx = get_context()
        async with ctx.engine.connect() as conn:
            found = await service.timeline(conn, ctx.schema, None, limit, cursor)
        paging.announce(request, response, found.next_cursor)
        return found

    @router.get("/summary", response_model=Summary, dependencies=reports)
    async def summary() -> Summary:
        ctx = get_context()
        async with ctx.engine.connect() as conn:
            return await service.summary(conn, ctx.schema)

    @router.get(
        "/dlq",
        response_model=DlqList,
        dependencies=[Depends(requires("dlq.read"))],
        responses=paging.RESPONSES,
    )
    async def dlq(
        request: Request,
        response: Response,
        topic: str | None = None,
        limit: int = Query(100, ge=1, le=1000),
        cursor: str | None = paging.CURSOR_QUERY,
    ) -> DlqList:
        ctx = get_context()
        async with ctx.engine.connect() as conn:
            found = await service.dlq(conn, ctx.schema, limit, topic, cursor)
        paging.announce(request, response, found.next_cursor)
        return found

    @router.get(
        "/rejects",
        response_model=RejectList,
        dependencies=[Depends(requires("ingest.read"))],
        responses=paging.RESPONSES,
    )
    async def rejects(
        request: Request,
        response: Response,
        limit: int = Query(100, ge=1, le=1000),
        cursor: str | None = paging.CURSOR_QUERY,
    ) -> RejectList:
        ctx = get_context()
        async with ctx.engine.connect() as conn:
            found = await service.rejects(conn, ctx.schema, limit, cursor)
        paging.announce(request, response, found.next_cursor)
        return found

    return router
