"""`/admin/sending/halts`: the sending halt's API. List (providers.read: supervisors, admins, services),
set and resume (`sending.halt`: supervisors and admins), each change in the hosting service's audit log (the
console's) in the same transaction as the halt. `arrears sending halt|resume|status` does the same from a
shell."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from ..audit.chain import record
from ..auth.access import requires
from ..auth.principal import Principal
from ..service import Context
from . import halts


class NewHalt(BaseModel):
    scope: halts.HaltScope = Field(description="all: every channel and campaign; channel; campaign")
    target: str | None = Field(
        None, max_length=64, description="The channel (sms, email, …) or campaign id; none for `all`"
    )
    reason: str = Field(
        min_length=3, max_length=500, description="Why (in the audit log and on the ops page)"
    )


class Resume(BaseModel):
    reason: str = Field(min_length=3, max_length=500, description="Why sending may go on")


class HaltView(BaseModel):
    halt_id: str
    scope: str
    target: str
    reason: str
    set_at: datetime
    set_by: str
    cleared_at: datetime | None
    cleared_by: str | None
    clear_reason: str | None

    @classmethod
    def of(cls, h: halts.Halt) -> HaltView:
        return cls(**{f: getattr(h, f) for f in cls.model_fields})


class HaltStatus(BaseModel):
    halted: bool = Field(description="Whether any halt is active")
    active: list[HaltView]
    recent: list[HaltView] = Field(description="The latest halts, cleared ones included, newest first")


async def set_halt(ctx: Context, who: Principal, scope: str, target: str | None, reason: str) -> halts.Halt:
    """Set and audit in one transaction (the API and the console page share it)."""
    async with ctx.transaction() as tx:
        halt = await halts.set_halt(tx.conn, scope, target, reason=reason, by=who.name)
        await record(
            tx.conn,
            ctx.schema,
            who,
            "sending.halt",
            "sending_halt",
            halt.halt_id,
            after=halt.summary(),
            reason=reason,
        )
    return halt


async def resume(ctx: Context, who: Principal, halt_id: str, reason: str) -> halts.Halt | None:
    async with ctx.transaction() as tx:
        halt = await halts.clear_halt(tx.conn, halt_id, reason=reason, by=who.name)
        if halt is not None:
            await record(
                tx.conn,
                ctx.schema,
                who,
                "sending.resume",
                "sending_halt",
                halt_id,
                before=halt.summary(),
                after={"cleared": True},
                reason=reason,
            )
    return halt


def halts_router(get_context: Callable[[], Context]) -> APIRouter:
    router = APIRouter(prefix="/admin/sending", tags=["admin"])
    can_halt = Depends(requires("sending.halt"))

    @router.get("/halts", response_model=HaltStatus, dependencies=[Depends(requires("providers.read"))])
    async def status() -> HaltStatus:
        async with get_context().engine.connect() as conn:
            found = await halts.active(conn)
            latest = await halts.recent(conn)
        return HaltStatus(
            halted=bool(found),
            active=[HaltView.of(h) for h in found],
            recent=[HaltView.of(h) for h in latest],
        )

    @router.post("/halts", response_model=HaltView, status_code=201)
    async def halt(body: NewHalt, who: Principal = can_halt) -> HaltView:
        """Stop sending now: once this answers, no dispatcher claims a matching notice (docs/security.md)."""
        try:
            return HaltView.of(await set_halt(get_context(), who, body.scope, body.target, body.reason))
        except halts.AlreadyHalted as e:
            raise HTTPException(409, str(e)) from None
        except halts.HaltError as e:
            raise HTTPException(422, str(e)) from None

    @router.post("/halts/{halt_id}/resume", response_model=HaltView)
    async def resume_halt(halt_id: str, body: Resume, who: Principal = can_halt) -> HaltView:
        try:
            done = await resume(get_context(), who, halt_id, body.reason)
        except halts.HaltError as e:
            raise HTTPException(422, str(e)) from None
        if done is None:
            raise HTTPException(404, "no such active halt")
        return HaltView.of(done)

    return router
