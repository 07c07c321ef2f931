"""`/admin/security`: locked sign-ins (list, unlock) and the security events the platform raised by itself
(lockouts, unusual access, revoke-all). Admin only (`security.manage`); an unlock is in the hosting service's
audit log (the console's) in the same transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from .. import paging
from ..audit.chain import record
from ..service import Context
from . import lockout
from .access import requires
from .principal import Principal


class LockView(BaseModel):
    key_id: str
    name: str | None
    roles: list[str]
    failures: int = Field(description="Failed sign-ins counted in the window")
    locked_at: datetime | None
    locked_until: datetime | None = Field(description="When the lock ends by itself; null = when unlocked")
    last_failure_at: datetime | None

    @classmethod
    def of(cls, lk: lockout.Lock) -> LockView:
        return cls(**{f: getattr(lk, f) for f in cls.model_fields if f != "roles"}, roles=list(lk.roles))


class Unlock(BaseModel):
    reason: str = Field(min_length=3, max_length=500, description="Why (e.g. 'owner confirmed the typos')")


class EventView(BaseModel):
    event_id: str
    at: datetime
    kind: str
    subject: str
    role: str
    service: str
    detail: dict[str, Any]


async def unlock(ctx: Context, who: Principal, key_id: str, reason: str) -> lockout.Lock | None:
    async with ctx.transaction() as tx:
        before = await lockout.unlock(tx.conn, key_id, by=who.name)
        if before is not None:
            await record(
                tx.conn,
                ctx.schema,
                who,
                "sign_in.unlock",
                "api_key",
                key_id,
                before={
                    "failures": before.failures,
                    "locked_at": before.locked_at,
                    "until": before.locked_until,
                },
                after={"locked": False},
                reason=reason,
            )
    return before


def security_router(get_context: Callable[[], Context]) -> APIRouter:
    router = APIRouter(prefix="/admin/security", tags=["admin"])
    admin = Depends(requires("security.manage"))

    @router.get("/locks", response_model=list[LockView], dependencies=[admin], responses=paging.RESPONSES)
    async def locks(
        request: Request,
        response: Response,
        limit: int = Query(100, ge=1, le=500),
        cursor: str | None = paging.CURSOR_QUERY,
    ) -> list[LockView]:
        async with get_context().engine.connect() as conn:
            found, after = await lockout.page_locked(conn, limit=limit, cursor=cursor)
        paging.announce(request, response, after)
        return [LockView.of(lk) for lk in found]

    @router.post("/locks/{key_id}/unlock", response_model=LockView)
    async def unlock_key(key_id: str, body: Unlock, who: Principal = admin) -> LockView:
        done = await unlock(get_context(), who, key_id, body.reason)
        if done is None:
            raise HTTPException(404, "this key is not locked")
        return LockView.of(done)

    @router.get("/events", response_model=list[EventView], dependencies=[admin], responses=paging.RESPONSES)
    async def events(
        request: Request,
        response: Response,
        kind: str | None = Query(None, max_length=40),
        limit: int = Query(50, ge=1, le=500),
        cursor: str | None = paging.CURSOR_QUERY,
    ) -> list[EventView]:
        async with get_context().engine.connect() as conn:
            found, after = await lockout.page_events(conn, kind=kind, limit=limit, cursor=cursor)
        paging.announce(request, response, after)
        return [EventView(**_fields(e)) for e in found]

    return router


def _fields(e: lockout.SecurityEvent) -> dict[str, Any]:
    return {f: getattr(e, f) for f in EventView.model_fields}
