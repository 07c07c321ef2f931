"""Settlement offers API: make and withdraw (supervisors and admins: `settlements.offer`), list (anyone who
reads accounts). Thin: roles, bodies, status codes."""

from __future__ import annotations

from collections.abc import Callable

from arrears_shared import paging
from arrears_shared.auth import Principal, requires
from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response

from ..deps import Deps
from ..overrides.models import Reason
from .models import OfferCreate, OfferView
from .service import Refused, create, debtor_today, page_offers, withdraw

AccountId = Path(min_length=1, max_length=64)
OfferId = Path(min_length=1, max_length=64)


def make_router(deps: Deps) -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(tags=["settlement offers"])
        offer = Depends(requires("settlements.offer"))

        @router.post("/accounts/{account_id}/offers", response_model=OfferView, status_code=201)
        async def make_offer(
            body: OfferCreate, account_id: str = AccountId, who: Principal = offer
        ) -> OfferView:
            """Offer the customer a settlement: `amount_minor` (less than the balance) paid by `expires_on`.
            The portal shows it to the verified customer, who may accept it there. One open offer per account."""
            now = deps.clock.now()
            try:
                async with get_context().transaction() as tx:
                    today = await debtor_today(tx.conn, account_id, now)
                    return await create(tx, who, account_id, body, today, now)
            except Refused as e:
                raise HTTPException(e.status, str(e)) from None

        @router.post("/accounts/{account_id}/offers/{offer_id}/withdraw", status_code=202)
        async def withdraw_offer(
            body: Reason, account_id: str = AccountId, offer_id: str = OfferId, who: Principal = offer
        ) -> dict[str, str]:
            """Withdraw an open offer: the portal stops showing it and it can no longer be accepted."""
            try:
                async with get_context().transaction() as tx:
                    await withdraw(tx, who, account_id, offer_id, deps.clock.now(), body.reason)
            except Refused as e:
                raise HTTPException(e.status, str(e)) from None
            return {"offer_id": offer_id, "status": "withdrawn"}

        @router.get(
            "/accounts/{account_id}/offers",
            response_model=list[OfferView],
            dependencies=[Depends(requires("accounts.read"))],
            responses=paging.RESPONSES,
        )
        async def offers(
            request: Request,
            response: Response,
            account_id: str = AccountId,
            limit: int = Query(50, ge=1, le=200),
            cursor: str | None = paging.CURSOR_QUERY,
        ) -> list[OfferView]:
            async with get_context().engine.connect() as conn:
                today = await debtor_today(conn, account_id, deps.clock.now())
                found, after = await page_offers(conn, account_id, today, limit, cursor)
            paging.announce(request, response, after)
            return found

        return router

    return factory
