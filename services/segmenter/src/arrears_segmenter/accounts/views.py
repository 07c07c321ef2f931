"""HTTP read API over the projection and the decision log (no business logic here)."""

from __future__ import annotations

from collections.abc import Callable

from arrears_shared import paging
from arrears_shared.audit import record
from arrears_shared.auth import Principal, requires
from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from ..deps import Deps
from .models import AccountView, DecisionView, FlagsUpdate
from .service import account_view, decision_log, set_flags


def make_router(deps: Deps) -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(prefix="/accounts", tags=["accounts"])

        pii = [Depends(requires("accounts.read"))]

        @router.get("/{account_id}", response_model=AccountView, dependencies=pii)
        async def get_account(account_id: str) -> AccountView:
            async with get_context().engine.connect() as conn:
                view = await account_view(conn, account_id, deps, deps.clock.now())
            if view is None:
                raise HTTPException(404, "account not found")
            return view

        @router.get(
            "/{account_id}/decisions",
            response_model=list[DecisionView],
            dependencies=pii,
            responses=paging.RESPONSES,
        )
        async def get_decisions(
            request: Request,
            response: Response,
            account_id: str,
            limit: int = Query(200, ge=1, le=500),
            cursor: str | None = paging.CURSOR_QUERY,
        ) -> list[DecisionView]:
            async with get_context().engine.connect() as conn:
                found, after = await decision_log(conn, account_id, limit, cursor)
            paging.announce(request, response, after)
            return found

        @router.post("/{account_id}/flags", response_model=AccountView)
        async def post_flags(
            account_id: str, body: FlagsUpdate, who: Principal = Depends(requires("overrides.write"))
        ) -> AccountView:
            """Operator override: complex (approval gate), do-not-contact, risk score."""
            ctx = get_context()
            async with ctx.transaction() as tx:
                before = await account_view(tx.conn, account_id, deps, deps.clock.now())
                ok = await set_flags(tx, account_id, body, deps, deps.clock.now(), who.name)
                view = await account_view(tx.conn, account_id, deps, deps.clock.now()) if ok else None
                if view is None or before is None:
                    raise HTTPException(404, "account not found")
                flags = ("complex", "do_not_contact", "risk_override")
                await record(
                    tx.conn,
                    ctx.schema,
                    who,
                    "account.flags",
                    "account",
                    account_id,
                    before={f: getattr(before, f, None) for f in flags},
                    after={f: getattr(view, f, None) for f in flags},
                )
            return view

        return router

    return factory
