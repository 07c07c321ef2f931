"""HTTP API of dunning policies (no business logic here). POST a YAML document to load a new version."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Body, HTTPException, Query

from ..deps import Deps
from . import store
from .models import Policy, PolicyError
from .service import Loaded, load_new_version


def make_router(deps: Deps) -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(prefix="/policies", tags=["policies"])

        @router.get("/active", response_model=Policy)
        async def get_active() -> Policy:
            async with get_context().transaction() as tx:
                return await store.active(tx.conn, deps.policy)

        @router.get("")
        async def list_versions() -> list[dict[str, Any]]:
            async with get_context().engine.connect() as conn:
                rows = await store.history(conn)
            return [
                {
                    "policy_id": r.policy_id,
                    "version": r.version,
                    "active": r.active,
                    "loaded_by": r.loaded_by,
                    "loaded_at": r.loaded_at,
                }
                for r in rows
            ]

        @router.post("", response_model=Loaded, status_code=201)
        async def load(
            document: str = Body(..., media_type="application/yaml", description="The policy as YAML"),
            actor: str = Query(..., min_length=1, description="Who loads it"),
        ) -> Loaded:
            try:
                async with get_context().transaction() as tx:
                    return await load_new_version(tx.conn, document, actor, deps, deps.clock.now())
            except PolicyError as e:
                raise HTTPException(422, {"message": "policy rejected", "errors": e.errors}) from None

        return router

    return factory
