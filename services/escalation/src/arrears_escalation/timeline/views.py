"""`GET /accounts/{account_id}/timeline` (viewer)."""

from __future__ import annotations

from collections.abc import Callable

from arrears_shared import paging
from arrears_shared.auth import Principal, requires
from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends, Query, Request, Response

from .service import TimelineItem, timeline


def make_router() -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(tags=["timeline"])

        @router.get(
            "/accounts/{account_id}/timeline", response_model=list[TimelineItem], responses=paging.RESPONSES
        )
        async def account_timeline(
            request: Request,
            response: Response,
            account_id: str,
            limit: int = Query(1000, ge=1, le=10000),
            cursor: str | None = paging.CURSOR_QUERY,
            _: Principal = Depends(requires("accounts.read")),
        ) -> list[TimelineItem]:
            """Everything that happened to the account, oldest first."""
            async with get_context().engine.connect() as conn:
                found, after = await timeline(conn, account_id, limit, cursor)
            paging.announce(request, response, after)
            return found

        return router

    return factory
