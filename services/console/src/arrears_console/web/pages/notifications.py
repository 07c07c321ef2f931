"""My notifications (SLA breaches of my tasks, or of my team's as its lead): the list, the unread count the
header badge shows, mark read. Every call goes to escalation as the signed-in person, which only ever
returns that person's own notifications."""

from __future__ import annotations

from arrears_shared.auth import Principal, requires
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ..templating import page
from ..upstream import UpstreamError
from .common import ContextGetter, back, upstreams


def router(get_context: ContextGetter) -> APIRouter:
    r = APIRouter(tags=["web"], include_in_schema=False)
    own = Depends(requires("notifications.own"))

    @r.get("/notifications", response_class=HTMLResponse)
    async def listing(request: Request, who: Principal = own) -> HTMLResponse:
        try:
            box = await upstreams(get_context()).call(
                request, who, "escalation", "GET", "/notifications", params={"limit": 200}
            )
        except UpstreamError as e:
            return page(
                request, who, "notifications.html", status=502, items=[], unread=0, unavailable=e.detail
            )
        return page(
            request, who, "notifications.html", items=box["items"], unread=box["unread"], unavailable=""
        )

    @r.get("/notifications/unread")
    async def unread(request: Request, who: Principal = own) -> JSONResponse:
        """The header badge: how many of my notifications are unread (null when escalation cannot say)."""
        try:
            box = await upstreams(get_context()).call(
                request, who, "escalation", "GET", "/notifications", params={"unread": "true", "limit": 1}
            )
        except UpstreamError:
            return JSONResponse({"unread": None}, headers={"Cache-Control": "no-store"})
        return JSONResponse({"unread": box["unread"]}, headers={"Cache-Control": "no-store"})

    @r.post("/notifications/read")
    async def mark_read(
        request: Request, notification_id: int | None = Form(None), who: Principal = own
    ) -> Response:
        body = {"ids": [notification_id] if notification_id is not None else None}
        try:
            done = await upstreams(get_context()).call(
                request, who, "escalation", "POST", "/notifications/read", json=body
            )
        except UpstreamError as e:
            return back("/notifications", error=f"marking read failed: {e.detail}")
        return back("/notifications", flash=f"{done['marked']} marked read")

    return r
