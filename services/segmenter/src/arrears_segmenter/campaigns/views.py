"""HTTP API of campaigns (no business logic here)."""

from __future__ import annotations

from collections.abc import Callable

from arrears_shared import paging
from arrears_shared.audit import record
from arrears_shared.auth import Principal, requires
from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response

from ..deps import Deps
from . import service
from .models import Campaign, CampaignIn, CampaignStatus, CampaignUpdate, Transition


def make_router(deps: Deps) -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(prefix="/campaigns", tags=["campaigns"])

        reports = [Depends(requires("reports.read"))]
        writer = Depends(requires("campaigns.write"))

        @router.get("", response_model=list[Campaign], dependencies=reports, responses=paging.RESPONSES)
        async def list_(
            request: Request,
            response: Response,
            status: CampaignStatus | None = None,
            limit: int = Query(200, ge=1, le=500),
            cursor: str | None = paging.CURSOR_QUERY,
        ) -> list[Campaign]:
            async with get_context().engine.connect() as conn:
                found, after = await service.page_campaigns(conn, status, limit, cursor)
            paging.announce(request, response, after)
            return found

        @router.post("", response_model=Campaign, status_code=201)
        async def create(body: CampaignIn, who: Principal = writer) -> Campaign:
            ctx = get_context()
            try:
                async with ctx.transaction() as tx:
                    made = await service.create(tx.conn, body, deps.clock.now())
                    await record(
                        tx.conn,
                        ctx.schema,
                        who,
                        "campaign.create",
                        "campaign",
                        made.campaign_id,
                        after=body.model_dump(mode="json"),
                    )
                    return made
            except service.CampaignConflict as e:
                raise HTTPException(409, str(e)) from None

        @router.get("/{campaign_id}", response_model=Campaign, dependencies=reports)
        async def get(campaign_id: str) -> Campaign:
            async with get_context().engine.connect() as conn:
                c = await service.get(conn, campaign_id)
            if c is None:
                raise HTTPException(404, "campaign not found")
            return c

        @router.patch("/{campaign_id}", response_model=Campaign)
        async def update(campaign_id: str, body: CampaignUpdate, who: Principal = writer) -> Campaign:
            """Change a campaign's name, owner or goal (text, amount and currency); audited with the before
            and after of what changed."""
            ctx = get_context()
            fields = set(body.model_fields_set)
            try:
                async with ctx.transaction() as tx:
                    before = await service.get(tx.conn, campaign_id)
                    after = await service.update(tx.conn, campaign_id, body, deps.clock.now())
                    await record(
                        tx.conn,
                        ctx.schema,
                        who,
                        "campaign.update",
                        "campaign",
                        campaign_id,
                        before=before.model_dump(mode="json", include=fields) if before else None,
                        after=after.model_dump(mode="json", include=fields),
                    )
                    return after
            except KeyError:
                raise HTTPException(404, "campaign not found") from None
            except service.CampaignConflict as e:
                raise HTTPException(422, str(e)) from None

        @router.post("/{campaign_id}/status", response_model=Campaign)
        async def transition(campaign_id: str, body: Transition, who: Principal = writer) -> Campaign:
            ctx = get_context()
            try:
                async with ctx.transaction() as tx:
                    before = await service.get(tx.conn, campaign_id)
                    after = await service.transition(tx.conn, campaign_id, body.status, deps.clock.now())
                    await record(
                        tx.conn,
                        ctx.schema,
                        who,
                        "campaign.status",
                        "campaign",
                        campaign_id,
                        before={"status": before.status if before else None},
                        after={"status": after.status},
                    )
                    return after
            except KeyError:
                raise HTTPException(404, "campaign not found") from None
            except service.CampaignConflict as e:
                raise HTTPException(409, str(e)) from None

        return router

    return factory
