"""Audit API: read the log (supervisor), verify the chain (admin)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from ..auth.deps import requires
from ..auth.service import Principal
from .service import list_entries, verify


class VerifyAnswer(BaseModel):
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    problems: list[str]


def make_router() -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(prefix="/audit", tags=["audit"])

        @router.get("")
        async def audit_list(
            entity_id: str | None = None,
            limit: int = Query(200, ge=1, le=5000),
            _: Principal = Depends(requires(get_context, "supervisor")),
        ) -> list[dict[str, Any]]:
            async with get_context().engine.connect() as conn:
                return await list_entries(conn, entity_id, limit)

        @router.get("/verify", response_model=VerifyAnswer)
        async def audit_verify(_: Principal = Depends(requires(get_context, "admin"))) -> VerifyAnswer:
            async with get_context().engine.connect() as conn:
                r = await verify(conn)
            return VerifyAnswer(
                ok=r.ok, entries=r.entries, head_seq=r.head_seq, head_hash=r.head_hash, problems=r.problems
            )

        return router

    return factory
