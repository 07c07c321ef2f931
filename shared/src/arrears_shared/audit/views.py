"""`GET /audit` (audit.read) and `GET /audit/verify` (audit.verify) over the service's own chain."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel

from .. import paging
from ..auth.access import requires
from ..service import Context
from .chain import list_entries, verify


class VerifyAnswer(BaseModel):
    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    problems: list[str]


def audit_router(get_context: Callable[[], Context]) -> APIRouter:
    router = APIRouter(prefix="/audit", tags=["audit"])

    @router.get("", dependencies=[Depends(requires("audit.read"))], responses=paging.RESPONSES)
    async def audit_list(
        request: Request,
        response: Response,
        entity_id: str | None = None,
        limit: int = Query(200, ge=1, le=1000),
        cursor: str | None = paging.CURSOR_QUERY,
    ) -> list[dict[str, Any]]:
        """Newest entry first; follow `X-Next-Cursor` for older ones."""
        ctx = get_context()
        before = paging.decode(cursor, [int])[0] if cursor else None
        async with ctx.engine.connect() as conn:
            rows = await list_entries(conn, ctx.schema, entity_id, limit + 1, before_seq=before)
        found, nxt = paging.page(rows, limit, lambda r: (r["seq"],))
        paging.announce(request, response, nxt)
        return found

    @router.get("/verify", response_model=VerifyAnswer, dependencies=[Depends(requires("audit.verify"))])
    async def audit_verify() -> VerifyAnswer:
        ctx = get_context()
        async with ctx.engine.connect() as conn:
            r = await verify(conn, ctx.schema)
        return VerifyAnswer(
            ok=r.ok, entries=r.entries, head_seq=r.head_seq, head_hash=r.head_hash, problems=r.problems
        )

    return router
