"""`GET /next-steps`: every account's pending step, paged (its own router: `/accounts/{id}` is taken)."""

from __future__ import annotations

from collections.abc import Callable

from arrears_shared import paging
from arrears_shared.auth import requires
from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends, Query, Request, Response

from ..deps import Deps
from .models import NextStep
from .service import next_steps


def make_router(deps: Deps) -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(tags=["next-steps"])

        @router.get(
            "/next-steps",
            response_model=list[NextStep],
            dependencies=[Depends(requires("reports.read"))],
            responses=paging.RESPONSES,
        )
        async def list_next_steps(
            request: Request,
            response: Response,
            account_id: list[str] | None = Query(
                None, max_length=500, description="Only these accounts (repeat the parameter; at most 500)"
            ),
            limit: int = Query(500, ge=1, le=5000),
            cursor: str | None = paging.CURSOR_QUERY,
        ) -> list[NextStep]:
            """Each account's pending step (by account id): step, cycle, tier and channels from the policy it
            was planned with, when it is due, and what holds it (a pause, a promise, a dispute, an approval,
            a campaign pause). No personal data: for lists and exports, e.g. the console's working set."""
            async with get_context().engine.connect() as conn:
                found, after = await next_steps(
                    conn,
                    deps.policy,
                    limit,
                    cursor,
                    account_id,
                    scoring=deps.score_use,
                    now=deps.clock.now(),
                )
            paging.announce(request, response, after)
            return found

        return router

    return factory
