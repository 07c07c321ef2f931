"""HTTP API of the approval gate (no business logic here)."""

from __future__ import annotations

from collections.abc import Callable

from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, HTTPException

from ..deps import Deps
from .service import HeldStep, Verdict, decide, held


def make_router(deps: Deps) -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(prefix="/approvals", tags=["approvals"])

        @router.get("", response_model=list[HeldStep])
        async def list_held() -> list[HeldStep]:
            async with get_context().engine.connect() as conn:
                return await held(conn)

        async def _decide(account_id: str, v: Verdict, approve: bool) -> dict[str, str]:
            async with get_context().transaction() as tx:
                ok = await decide(tx.conn, account_id, v, approve, deps, deps.clock.now())
            if not ok:
                raise HTTPException(404, f"no held step {v.step} (cycle {v.cycle}) for account {account_id}")
            return {"status": "approved" if approve else "rejected"}

        @router.post("/{account_id}/approve")
        async def approve(account_id: str, v: Verdict) -> dict[str, str]:
            return await _decide(account_id, v, True)

        @router.post("/{account_id}/reject")
        async def reject(account_id: str, v: Verdict) -> dict[str, str]:
            return await _decide(account_id, v, False)

        return router

    return factory
