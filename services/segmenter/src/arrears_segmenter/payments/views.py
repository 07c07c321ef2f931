"""HTTP read API over failed-payment retries (no business logic here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from arrears_shared import paging
from arrears_shared.auth import requires
from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import select

from ..deps import Deps
from .models import PaymentRetryView, payment_retries

AT_RISK = ("at_risk", "exhausted")


def _view(r: dict) -> PaymentRetryView:  # type: ignore[type-arg]
    return PaymentRetryView(
        **{k: r[k] for k in PaymentRetryView.model_fields if k in r},
        at_risk=r["state"] in AT_RISK,
        next_retry_at=r["next_at"],
    )


def make_router(deps: Deps) -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(tags=["payments"])
        read = [Depends(requires("accounts.read"))]

        def keys() -> tuple[Any, ...]:
            c = payment_retries.c
            return (c.last_failed_at, c.account_id, c.provider, c.payment_id)

        async def one_page(
            where: Any, limit: int, cursor: str | None
        ) -> tuple[list[PaymentRetryView], str | None]:
            q = paging.keyset(select(payment_retries).where(where), keys(), cursor, limit)
            async with get_context().engine.connect() as conn:
                rows = [dict(r) for r in (await conn.execute(q)).mappings()]
            found, after = paging.page(
                rows, limit, lambda r: (r["last_failed_at"], r["account_id"], r["provider"], r["payment_id"])
            )
            return [_view(r) for r in found], after

        @router.get(
            "/accounts/{account_id}/payment-retries",
            response_model=list[PaymentRetryView],
            dependencies=read,
            responses=paging.RESPONSES,
        )
        async def account_retries(
            request: Request,
            response: Response,
            account_id: str,
            limit: int = Query(100, ge=1, le=1000),
            cursor: str | None = paging.CURSOR_QUERY,
        ) -> list[PaymentRetryView]:
            """The account's failed payments, newest first; the account is at risk while one is `at_risk`
            or `exhausted`."""
            found, after = await one_page(payment_retries.c.account_id == account_id, limit, cursor)
            paging.announce(request, response, after)
            return found

        @router.get(
            "/payment-retries",
            response_model=list[PaymentRetryView],
            dependencies=read,
            responses=paging.RESPONSES,
        )
        async def list_retries(
            request: Request,
            response: Response,
            state: Literal["at_risk", "exhausted", "cleared", "open"] = Query(
                "open", description="`open` = at risk (at_risk or exhausted)"
            ),
            limit: int = Query(1000, ge=1, le=10_000),
            cursor: str | None = paging.CURSOR_QUERY,
        ) -> list[PaymentRetryView]:
            """Failed payments in a state, the latest failure first."""
            states = AT_RISK if state == "open" else (state,)
            found, after = await one_page(payment_retries.c.state.in_(states), limit, cursor)
            paging.announce(request, response, after)
            return found

        return router

    return factory
