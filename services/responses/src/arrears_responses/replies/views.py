"""Read API over stored replies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from arrears_shared import paging
from arrears_shared.auth import requires
from arrears_shared.service import Context
from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import text

from ..webhooks.models import UnmatchedReplies, UnmatchedReply


def replies_router(get_context: Callable[[], Context]) -> APIRouter:
    router = APIRouter(tags=["replies"])

    @router.get(
        "/replies/unmatched",
        response_model=UnmatchedReplies,
        dependencies=[Depends(requires("accounts.read"))],
        responses=paging.RESPONSES,
    )
    async def unmatched(
        request: Request,
        response: Response,
        limit: int = Query(100, ge=1, le=1000),
        cursor: str | None = paging.CURSOR_QUERY,
    ) -> UnmatchedReplies:
        ctx = get_context()
        after, params = paging.after_sql(cursor, (("received_at", datetime), ("reply_id", str)))
        async with ctx.engine.connect() as conn:
            rows, nxt = paging.page(
                (
                    await conn.execute(
                        text(
                            f"""SELECT reply_id, channel, from_address, to_address, text, intent, confidence,
                                   received_at
                            FROM {ctx.schema}.replies WHERE account_id IS NULL AND {after}
                            ORDER BY received_at DESC, reply_id DESC LIMIT :n"""
                        ),
                        {"n": limit + 1, **params},
                    )
                ).all(),
                limit,
                lambda r: (r.received_at, r.reply_id),
            )
            total = (
                await conn.execute(
                    text(f"SELECT count(*) FROM {ctx.schema}.replies WHERE account_id IS NULL")
                )
            ).scalar_one()
        paging.announce(request, response, nxt)
        return UnmatchedReplies(items=[UnmatchedReply.model_validate(r._asdict()) for r in rows], count=total)

    return router
