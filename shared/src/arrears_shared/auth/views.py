"""`/admin/api-keys`: create (the plaintext is in the answer, once), list, rotate, revoke, revoke all at once
(incident response; the caller's own key is kept unless told otherwise). Admin only; every change is in the
hosting service's audit log. The console hosts it; `arrears keys` does the same from a shell."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from .. import paging
from ..audit.chain import record
from ..service import Context
from . import keys
from .access import requires
from .lockout import security_event
from .principal import Principal
from .roles import Role


class NewKey(BaseModel):
    name: str = Field(
        pattern=keys.NAME_PATTERN, description="Who or what uses the key (unique among active keys)"
    )
    roles: list[Role] = Field(min_length=1, max_length=5)
    team: str | None = Field(None, max_length=64)
    expires_at: datetime | None = Field(None, description="When the key stops working (unset: never)")


class KeyView(BaseModel):
    key_id: str
    display: str = Field(description="Recognisable prefix and id; the secret is never shown again")
    name: str
    roles: list[str]
    team: str | None
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, k: keys.KeyInfo) -> KeyView:
        return cls(
            display=k.display,
            **{f: getattr(k, f) for f in cls.model_fields if f != "display"} | {"roles": list(k.roles)},
        )


class CreatedKey(KeyView):
    key: str = Field(description="The API key. Shown once: only its SHA-256 is stored")


REVOKE_ALL_CONFIRMATION = "REVOKE ALL"


class RevokeAll(BaseModel):
    reason: str = Field(min_length=3, max_length=500, description="Why (in the audit log)")
    confirm: str = Field(
        max_length=32,
        description="Type the words REVOKE ALL (capitals, one space): every API key stops working at once, so a "
        "mistaken or replayed call must not do it",
    )
    keep_own: bool = Field(
        True,
        description="Keep the key the caller signed in with (a console session opened with it stays too), so "
        "the admin doing this is not locked out; false = revoke it as well (break-glass: `arrears keys "
        "revoke-all --new-admin` from a shell with database access issues a fresh admin key)",
    )


class RevokedAll(BaseModel):
    revoked: int = Field(description="Keys revoked")
    sessions_ended: int = Field(description="Console sessions opened with those keys, ended")
    kept: list[str] = Field(description="Key ids left active")


class Rotation(BaseModel):
    grace_s: int = Field(0, ge=0, le=7 * 86400, strict=True, description="Seconds the old key keeps working")


def _summary(k: keys.KeyInfo) -> dict[str, object]:
    return {"name": k.name, "roles": list(k.roles), "team": k.team, "expires_at": k.expires_at}


async def revoke_all_keys(ctx: Context, who: Principal, reason: str, *, keep_own: bool) -> RevokedAll:
    """Revoke every key (but the caller's own with `keep_own`), end their sessions, audit: one transaction.
    The API and the console's incident page share it."""
    keep = (who.subject,) if keep_own and who.kind in ("api_key", "session") else ()
    async with ctx.transaction() as tx:
        revoked, ended = await keys.revoke_all(tx.conn, keep=keep)
        await security_event(
            tx.conn, "keys_revoked_all", who.subject, role=who.role, detail={"revoked": len(revoked)}
        )
        await record(
            tx.conn,
            ctx.schema,
            who,
            "api_key.revoke_all",
            "api_key",
            "*",
            after={"revoked": [k.key_id for k in revoked], "kept": list(keep), "sessions_ended": ended},
            reason=reason,
        )
    return RevokedAll(revoked=len(revoked), sessions_ended=ended, kept=list(keep))


def api_keys_router(get_context: Callable[[], Context]) -> APIRouter:
    router = APIRouter(prefix="/admin/api-keys", tags=["admin"])
    admin = Depends(requires("keys.manage"))

    @router.get("", response_model=list[KeyView], dependencies=[admin], responses=paging.RESPONSES)
    async def list_keys(
        request: Request,
        response: Response,
        include_revoked: bool = False,
        limit: int = Query(100, ge=1, le=500),
        cursor: str | None = paging.CURSOR_QUERY,
    ) -> list[KeyView]:
        async with get_context().engine.connect() as conn:
            found, after = await keys.page_keys(
                conn, include_revoked=include_revoked, limit=limit, cursor=cursor
            )
        paging.announce(request, response, after)
        return [KeyView.of(k) for k in found]

    @router.post("", response_model=CreatedKey, status_code=201)
    async def create(body: NewKey, who: Principal = admin) -> CreatedKey:
        ctx = get_context()
        async with ctx.transaction() as tx:
            try:
                info, plaintext = await keys.create(
                    tx.conn,
                    name=body.name,
                    roles=tuple(body.roles),
                    team=body.team,
                    expires_at=body.expires_at,
                    created_by=who.name,
                )
            except keys.KeyNameTaken as e:
                raise HTTPException(409, str(e)) from None
            except ValueError as e:
                raise HTTPException(422, str(e)) from None
            await record(
                tx.conn, ctx.schema, who, "api_key.create", "api_key", info.key_id, after=_summary(info)
            )
        return CreatedKey(key=plaintext, **KeyView.of(info).model_dump())

    @router.post("/{key_id}/rotate", response_model=CreatedKey, status_code=201)
    async def rotate(key_id: str, body: Rotation | None = None, who: Principal = admin) -> CreatedKey:
        ctx = get_context()
        grace = timedelta(seconds=body.grace_s if body else 0)
        async with ctx.transaction() as tx:
            try:
                done = await keys.rotate(tx.conn, key_id, rotated_by=who.name, grace=grace)
            except keys.KeyNameTaken:  # a key in its grace period, already replaced by an active one
                raise HTTPException(409, "this key was already rotated; rotate its successor") from None
            if done is None:
                raise HTTPException(404, "no such active key")
            info, plaintext = done
            await record(
                tx.conn,
                ctx.schema,
                who,
                "api_key.rotate",
                "api_key",
                key_id,
                after={"new_key_id": info.key_id, "grace_s": int(grace.total_seconds())},
            )
        return CreatedKey(key=plaintext, **KeyView.of(info).model_dump())

    @router.post("/revoke-all", response_model=RevokedAll)
    async def revoke_all(body: RevokeAll, who: Principal = admin) -> RevokedAll:
        """Revoke every API key at once (incident response) and end the console sessions opened with them.
        The caller's own key is kept unless `keep_own` is false; people signed in with the identity provider
        are not affected (disable them there)."""
        if body.confirm != REVOKE_ALL_CONFIRMATION:
            raise HTTPException(422, f"confirm must be {REVOKE_ALL_CONFIRMATION!r}: every key stops working")
        return await revoke_all_keys(get_context(), who, body.reason, keep_own=body.keep_own)

    @router.delete("/{key_id}", status_code=204)
    async def revoke(key_id: str, who: Principal = admin) -> None:
        ctx = get_context()
        async with ctx.transaction() as tx:
            before = await keys.get(tx.conn, key_id)
            if before is None or not await keys.revoke(tx.conn, key_id):
                raise HTTPException(404, "no such active key")
            await record(
                tx.conn, ctx.schema, who, "api_key.revoke", "api_key", key_id, before=_summary(before)
            )

    return router
