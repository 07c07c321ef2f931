"""API keys (admin): create (the plaintext is returned once), revoke. Both audited."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from ..audit.service import append
from .deps import requires
from .service import Principal, Role, hash_key, new_key, revoke_key, upsert_key


class NewKey(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,100}$")
    role: Role
    team: str | None = Field(None, max_length=64)


class CreatedKey(BaseModel):
    name: str
    role: Role
    key: str = Field(description="Shown once; only its SHA-256 is stored")


def make_router() -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        router = APIRouter(prefix="/admin/api-keys", tags=["admin"])
        admin = Depends(requires(get_context, "admin"))

        @router.post("", response_model=CreatedKey, status_code=201)
        async def create(body: NewKey, who: Principal = admin) -> CreatedKey:
            key = new_key()
            async with get_context().transaction() as tx:
                await upsert_key(tx.conn, body.name, body.role, hash_key(key), body.team)
                await append(
                    tx.conn,
                    actor=who.name,
                    role=who.role,
                    action="api_key.create",
                    entity="api_key",
                    entity_id=body.name,
                    after={"role": body.role, "team": body.team},
                    at=datetime.now(UTC),
                )
            return CreatedKey(name=body.name, role=body.role, key=key)

        @router.delete("/{name}", status_code=204)
        async def revoke(name: str, who: Principal = admin) -> None:
            async with get_context().transaction() as tx:
                if not await revoke_key(tx.conn, name):
                    raise HTTPException(404, "no such active key")
                await append(
                    tx.conn,
                    actor=who.name,
                    role=who.role,
                    action="api_key.revoke",
                    entity="api_key",
                    entity_id=name,
                    at=datetime.now(UTC),
                )

        return router

    return factory


async def bootstrap_keys(ctx: Context, spec: str) -> None:
    """`on_start`: load ARREARS_ESCALATION_API_KEYS (name:role:sha256hex) into the key table."""
    from .service import parse_bootstrap

    entries = parse_bootstrap(spec)
    if not entries:
        return
    async with ctx.engine.begin() as conn:
        for name, role, key_hash in entries:
            await upsert_key(conn, name, role, key_hash)
