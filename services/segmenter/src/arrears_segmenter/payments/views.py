"""HTTP read API over failed-payment retries (no business logic here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from arrears_shared.auth import requires
from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends, Query
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

        @router.get(
            "/accounts/{account_id}/payment-retries", response_model=list[PaymentRetryView], dependencies=read
        )
        async def account_retries(
            account_id: str, limit: int = Query(100, ge=1, le=1000)
        ) -> list[PaymentRetryView]:
            """The account's failed payments, newest first (at most `limit`); the account is at risk while one
            is `at_risk` or `exhausted`."""
            c = payment_retries.c
            async with get_context().engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(payment_retries)
                        .where(c.account_id == account_id)
                        .order_by(c.last_failed_at.desc())
                        .limit(limit)
                    )
                ).mappings()
                return [_view(dict(r)) for r in rows]

        @router.get("/payment-retries", response_model=list[PaymentRetryView], dependencies=read)
        async def list_retries(
            state: Literal["at_risk", "exhausted", "cleared", "open"] = Query(
                "open", description="`open` = at risk (at_risk or exhausted)"
            ),
            limit: int = Query(1000, ge=1, le=10_000),
        ) -> list[PaymentRetryView]:
            c = payment_retries.c
            states = AT_RISK if state == "open" else (state,)
            async with get_context().engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(payment_retries)
                        .where(c.state.in_(states))
                        .order_by(c.last_failed_at.desc())
                        .limit(limit)
                    )
                ).mappings()
                return [_view(dict(r)) for r in rows]

        return router

    return factory
