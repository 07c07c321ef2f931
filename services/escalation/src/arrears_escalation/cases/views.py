"""Cases API (thin: roles, parsing and status codes only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from arrears_shared import paging
from arrears_shared.auth import Principal, requires
from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from ..deps import Deps
from .models import CaseView, CloseCase
from .service import CaseNotOpen, close_case, get_case, page_cases


def make_router(deps: Deps) -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(prefix="/cases", tags=["cases"])
        viewer = Depends(requires("accounts.read"))
        agent = Depends(requires("tasks.work"))

        @router.get("", response_model=list[CaseView], responses=paging.RESPONSES)
        async def cases_list(
            request: Request,
            response: Response,
            status: Literal["open", "closed"] | None = None,
            account_id: str | None = None,
            limit: int = Query(100, ge=1, le=500),
            cursor: str | None = paging.CURSOR_QUERY,
            _: Principal = viewer,
        ) -> list[CaseView]:
            async with get_context().engine.connect() as conn:
                rows, after = await page_cases(conn, status, account_id, limit, cursor)
            paging.announce(request, response, after)
            return rows

        @router.get("/{case_id}", response_model=CaseView)
        async def case_get(case_id: str, _: Principal = viewer) -> CaseView:
            async with get_context().engine.connect() as conn:
                view = await get_case(conn, case_id)
            if view is None:
                raise HTTPException(404, "case not found")
            return view

        @router.post("/{case_id}/close", response_model=CaseView)
        async def case_close(case_id: str, body: CloseCase, who: Principal = agent) -> CaseView:
            now = deps.clock.now()
            try:
                async with get_context().transaction() as tx:
                    view = await close_case(tx.conn, case_id, body.note, now, who=who)  # audited
            except CaseNotOpen as e:
                raise HTTPException(409, "case is already closed") from e
            if view is None:
                raise HTTPException(404, "case not found")
            return view

        return router

    return factory
