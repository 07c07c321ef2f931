"""HTTP API of the approval gate (no business logic here)."""

from __future__ import annotations

from collections.abc import Callable

from arrears_shared import paging
from arrears_shared.audit import record
from arrears_shared.auth import Principal, requires
from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from ..deps import Deps
from .service import HeldStep, Verdict, decide, page_held


def make_router(deps: Deps) -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(prefix="/approvals", tags=["approvals"])

        decider = Depends(requires("approvals.decide"))

        @router.get(
            "",
            response_model=list[HeldStep],
            dependencies=[Depends(requires("accounts.read"))],
            responses=paging.RESPONSES,
        )
        async def list_held(
            request: Request,
            response: Response,
            limit: int = Query(200, ge=1, le=500),
            cursor: str | None = paging.CURSOR_QUERY,
        ) -> list[HeldStep]:
            async with get_context().engine.connect() as conn:
                found, after = await page_held(conn, limit, cursor)
            paging.announce(request, response, after)
            return found

        async def _decide(account_id: str, v: Verdict, approve: bool, who: Principal) -> dict[str, str]:
            ctx = get_context()
            async with ctx.transaction() as tx:
                ok = await decide(tx.conn, account_id, v, approve, deps, deps.clock.now(), who.name)
                if not ok:
                    raise HTTPException(
                        404, f"no held step {v.step} (cycle {v.cycle}) for account {account_id}"
                    )
                await record(
                    tx.conn,
                    ctx.schema,
                    who,
                    "approval.approve" if approve else "approval.reject",
                    "account",
                    account_id,
                    before={"step": v.step, "cycle": v.cycle, "state": "held"},
                    after={"state": "pending" if approve else "suppressed"},
                    reason=v.note,
                )
            return {"status": "approved" if approve else "rejected"}

        @router.post("/{account_id}/approve")
        async def approve(account_id: str, v: Verdict, who: Principal = decider) -> dict[str, str]:
            return await _decide(account_id, v, True, who)

        @router.post("/{account_id}/reject")
        async def reject(account_id: str, v: Verdict, who: Principal = decider) -> dict[str, str]:
            return await _decide(account_id, v, False, who)

        return router

    return factory
