"""HTTP API of campaigns (no business logic here)."""

from __future__ import annotations

from collections.abc import Callable

from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, HTTPException

from ..deps import Deps
from . import service
from .models import Campaign, CampaignIn, CampaignStatus, Transition


def make_router(deps: Deps) -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(prefix="/campaigns", tags=["campaigns"])

        @router.get("", response_model=list[Campaign])
        async def list_(status: CampaignStatus | None = None) -> list[Campaign]:
            async with get_context().engine.connect() as conn:
                return await service.list_campaigns(conn, status)

        @router.post("", response_model=Campaign, status_code=201)
        async def create(body: CampaignIn) -> Campaign:
            try:
                async with get_context().transaction() as tx:
                    return await service.create(tx.conn, body, deps.clock.now())
            except service.CampaignConflict as e:
                raise HTTPException(409, str(e)) from None

        @router.get("/{campaign_id}", response_model=Campaign)
        async def get(campaign_id: str) -> Campaign:
            async with get_context().engine.connect() as conn:
                c = await service.get(conn, campaign_id)
            if c is None:
                raise HTTPException(404, "campaign not found")
            return c

        @router.post("/{campaign_id}/status", response_model=Campaign)
        async def transition(campaign_id: str, body: Transition) -> Campaign:
            try:
                async with get_context().transaction() as tx:
                    return await service.transition(tx.conn, campaign_id, body.status, deps.clock.now())
            except KeyError:
                raise HTTPException(404, "campaign not found") from None
            except service.CampaignConflict as e:
                raise HTTPException(409, str(e)) from None

        return router

    return factory
