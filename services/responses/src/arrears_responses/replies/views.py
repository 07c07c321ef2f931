"""Read API over stored replies."""

from __future__ import annotations

from collections.abc import Callable

from arrears_shared.auth import requires
from arrears_shared.service import Context
from fastapi import APIRouter, Depends, Query
from sqlalchemy import text

from ..webhooks.models import UnmatchedReplies, UnmatchedReply


def replies_router(get_context: Callable[[], Context]) -> APIRouter:
    router = APIRouter(tags=["replies"])

    @router.get(
        "/replies/unmatched",
        response_model=UnmatchedReplies,
        dependencies=[Depends(requires("accounts.read"))],
    )
    async def unmatched(limit: int = Query(100, ge=1, le=1000)) -> UnmatchedReplies:
        ctx = get_context()
        async with ctx.engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"""SELECT reply_id, channel, from_address, to_address, text, intent, confidence,
                               received_at
                        FROM {ctx.schema}.replies WHERE account_id IS NULL
                        ORDER BY received_at DESC LIMIT :n"""
                    ),
                    {"n": limit},
                )
            ).all()
            total = (
                await conn.execute(
                    text(f"SELECT count(*) FROM {ctx.schema}.replies WHERE account_id IS NULL")
                )
            ).scalar_one()
        return UnmatchedReplies(items=[UnmatchedReply.model_validate(r._asdict()) for r in rows], count=total)

    return router
