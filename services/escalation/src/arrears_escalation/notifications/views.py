"""My notifications (notifications.own): list with the unread count, mark read. Each person sees only
their own (the recipient is the authenticated principal, never a parameter)."""

from __future__ import annotations

from collections.abc import Callable

from arrears_shared import paging
from arrears_shared.auth import Principal, requires
from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, StrictInt

from ..audit.service import append
from ..deps import Deps
from .models import Inbox
from .service import inbox, mark_read


class MarkRead(BaseModel):
    ids: list[StrictInt] | None = Field(
        max_length=500, description="The notifications to mark read; null = all of mine (required: say which)"
    )


class Marked(BaseModel):
    marked: int


def make_router(deps: Deps) -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(prefix="/notifications", tags=["notifications"])
        own = Depends(requires("notifications.own"))

        @router.get("", response_model=Inbox, responses=paging.RESPONSES)
        async def my_notifications(
            request: Request,
            response: Response,
            unread: bool = False,
            limit: int = Query(50, ge=1, le=500),
            cursor: str | None = paging.CURSOR_QUERY,
            who: Principal = own,
        ) -> Inbox:
            """My notifications, newest first (`unread`: only those not read yet), with my unread count."""
            async with get_context().engine.connect() as conn:
                box, after = await inbox(conn, who.name, unread_only=unread, limit=limit, cursor=cursor)
            paging.announce(request, response, after)
            return box

        @router.post("/read", response_model=Marked)
        async def read(body: MarkRead, who: Principal = own) -> Marked:
            now = deps.clock.now()
            async with get_context().transaction() as tx:
                changed = await mark_read(tx.conn, who.name, body.ids, now)
                if changed:
                    await append(
                        tx.conn,
                        actor=who.name,
                        role=who.role,
                        action="notification.read",
                        entity="notification",
                        entity_id=",".join(map(str, changed))[:200],
                        before={"read": False},
                        after={"read": True, "ids": changed},
                        at=now,
                    )
            return Marked(marked=len(changed))

        return router

    return factory
