"""FastAPI dependencies: `Authorization: Bearer <key>` (or `X-API-Key`) -> Principal, with a minimum role."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from arrears_shared.service import Context
from fastapi import Header, HTTPException

from .. import metrics
from .service import Principal, Role, authenticate


def requires(get_context: Callable[[], Context], role: Role) -> Callable[..., Awaitable[Principal]]:
    async def dependency(
        authorization: str | None = Header(None), x_api_key: str | None = Header(None)
    ) -> Principal:
        key = x_api_key
        if authorization and authorization.lower().startswith("bearer "):
            key = authorization[7:].strip()
        if not key:
            metrics.AUTH_FAILURES.labels("missing").inc()
            raise HTTPException(401, "API key required", headers={"WWW-Authenticate": "Bearer"})
        async with get_context().engine.connect() as conn:
            principal = await authenticate(conn, key)
        if principal is None:
            metrics.AUTH_FAILURES.labels("unknown_key").inc()
            raise HTTPException(401, "invalid API key", headers={"WWW-Authenticate": "Bearer"})
        if not principal.at_least(role):
            metrics.AUTH_FAILURES.labels("forbidden").inc()
            raise HTTPException(403, f"requires role {role} (you are {principal.role})")
        return principal

    dependency.__name__ = f"requires_{role}"
    return dependency
