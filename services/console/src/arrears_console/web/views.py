"""`GET /`: the console page."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from arrears_shared.service import Context
from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from ..readmodels import service
from ..readmodels.views import today_utc
from ..settings import ConsoleSettings
from .page import render


def web_router(get_context: Callable[[], Context]) -> APIRouter:
    router = APIRouter(tags=["web"])

    @router.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        ctx = get_context()
        settings = cast(ConsoleSettings, ctx.settings)
        async with ctx.engine.connect() as conn:
            page = render(
                aging=await service.aging(conn, ctx.schema, today_utc()),
                summary=await service.summary(conn, ctx.schema),
                timeline=await service.timeline(conn, ctx.schema, None, 25),
                dlq=await service.dlq(conn, ctx.schema, 20),
                rejects=await service.rejects(conn, ctx.schema, 20),
                refresh_s=settings.console_refresh_s,
            )
        return HTMLResponse(page)

    return router
