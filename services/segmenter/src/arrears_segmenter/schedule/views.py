"""HTTP API of dunning policies (no business logic here). POST a YAML document to load a new version, or to
/policies/simulate to see what it would do against the active one first (a dry run: nothing is written)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arrears_shared import paging
from arrears_shared.audit import record
from arrears_shared.audit.coverage import changes_nothing
from arrears_shared.auth import Principal, requires
from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response

from ..deps import Deps
from ..simulate import compare
from . import store
from .models import Policy, PolicyError
from .service import Loaded, load_new_version

SIMULATE_MAX_S = 30.0  # wall-time cap of each of the two runs: bounds how long they hold their row locks


def make_router(deps: Deps) -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(prefix="/policies", tags=["policies"])

        reports = [Depends(requires("reports.read"))]

        @router.get("/active", response_model=Policy, dependencies=reports)
        async def get_active() -> Policy:
            async with get_context().transaction() as tx:
                return await store.active(tx.conn, deps.policy)

        @router.get("", dependencies=reports, responses=paging.RESPONSES)
        async def list_versions(
            request: Request,
            response: Response,
            limit: int = Query(100, ge=1, le=500),
            cursor: str | None = paging.CURSOR_QUERY,
        ) -> list[dict[str, Any]]:
            async with get_context().engine.connect() as conn:
                rows, after = await store.history(conn, limit, cursor)
            paging.announce(request, response, after)
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
            who: Principal = Depends(requires("policies.write")),
        ) -> Loaded:
            """Load and activate a new version; the loader recorded is the authenticated caller."""
            ctx = get_context()
            try:
                async with ctx.transaction() as tx:
                    before = await store.active(tx.conn, deps.policy)
                    loaded = await load_new_version(tx.conn, document, who.name, deps, deps.clock.now())
                    await record(
                        tx.conn,
                        ctx.schema,
                        who,
                        "policy.load",
                        "policy",
                        loaded.policy_id,
                        before={"policy_id": before.id, "version": before.version},
                        after=loaded.model_dump(mode="json"),
                    )
                    return loaded
            except PolicyError as e:
                raise HTTPException(422, {"message": "policy rejected", "errors": e.errors}) from None

        @router.post("/simulate", dependencies=[Depends(changes_nothing("a dry run, rolled back"))])
        async def simulate(
            document: str = Body(..., media_type="application/yaml", description="The candidate as YAML"),
            days: int = Query(30, ge=1, le=90, description="Virtual days to run"),
            _who: Principal = Depends(requires("policies.write")),
        ) -> dict[str, Any]:
            """Dry run: what the candidate and the active policy would each send, defer, suppress or hold over
            the next `days` days against current data (by tier and channel, by day, by gate rule). The
            candidate is validated exactly as `POST /policies` does (422 with every problem). Both runs are
            rolled back: nothing is stored, emitted or audited."""
            try:
                result = await compare(
                    get_context().engine,
                    deps,
                    days=days,
                    candidate_text=document,
                    max_seconds=SIMULATE_MAX_S,
                )
            except PolicyError as e:
                raise HTTPException(422, {"message": "policy rejected", "errors": e.errors}) from None
            return result.to_dict()

        return router

    return factory
