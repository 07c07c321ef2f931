"""Every route declares who may call it, and the app refuses to start when one does not.

    @router.post("/{account_id}/approve")
    async def approve(account_id: str, who: Principal = Depends(requires("approvals.decide"))) -> ...

    @router.post("/webhooks/quo", dependencies=[Depends(public("QUO webhook signature"))])

`requires(permission)` returns the authenticated principal (the gate has already refused anyone without a
valid credential, 401) or answers 403 when the principal's roles lack the permission. `public(reason)` marks
one of the few routes anyone may call; the reason is printed in docs/security.md. `check_routes(app)` walks
every route at start-up and raises `UndeclaredRouteError` for any route without exactly one declaration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import fastapi.routing
from fastapi import FastAPI, HTTPException, Request
from fastapi.dependencies.models import Dependant

from . import metrics
from .principal import Principal
from .roles import PERMISSIONS, roles_with

ACCESS_ATTR = "__arrears_access__"


@dataclass(frozen=True)
class Access:
    permission: str | None  # None: public
    reason: str = ""

    @property
    def public(self) -> bool:
        return self.permission is None


class UndeclaredRouteError(RuntimeError):
    pass


def current_principal(request: Request) -> Principal | None:
    return request.scope.get("state", {}).get("principal")


def requires(permission: str) -> Callable[[Request], Principal]:
    """Dependency: the caller must hold `permission`; returns the caller."""
    roles = roles_with(permission)  # raises on an unknown permission, at import time of the view

    def dependency(request: Request) -> Principal:
        principal = current_principal(request)
        if principal is None:  # the gate authenticates before routing; this is a second line of defence
            raise HTTPException(401, "authentication required", headers={"WWW-Authenticate": "Bearer"})
        if not principal.can(permission):
            metrics.FORBIDDEN.labels(permission).inc()
            raise HTTPException(
                403,
                f"forbidden: this needs the permission {permission!r} ({PERMISSIONS[permission]}), "
                f"held by: {', '.join(roles)}",
            )
        return principal

    setattr(dependency, ACCESS_ATTR, Access(permission))
    dependency.__name__ = f"requires_{permission.replace('.', '_')}"
    return dependency


def public(reason: str) -> Callable[[], None]:
    """Dependency marking a route anyone may call; `reason` says why that is safe."""
    if not reason:
        raise ValueError("a public route must say why it is safe to be public")

    def dependency() -> None:
        return None

    setattr(dependency, ACCESS_ATTR, Access(None, reason))
    dependency.__name__ = "public"
    return dependency


def _walk(dependant: Dependant) -> Iterator[Any]:
    for d in dependant.dependencies:
        yield d.call
        yield from _walk(d)


def effective_routes(app: FastAPI) -> list[Any]:
    """Every route as served, with its full path and the dependencies of the routers it was included with.
    FastAPI >= 0.16x includes routers lazily (`iter_route_contexts`); older versions flatten `app.routes`."""
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    return list(iterate(app.routes)) if iterate else list(app.routes)


def declared_access(route: Any) -> list[Access]:
    dependant = getattr(route, "dependant", None)
    if isinstance(dependant, Dependant):
        return [getattr(c, ACCESS_ATTR) for c in _walk(dependant) if hasattr(c, ACCESS_ATTR)]
    endpoint = getattr(route, "endpoint", None)
    acc = getattr(endpoint, ACCESS_ATTR, None)
    return [acc] if acc else []


def route_label(route: Any) -> str:
    methods = sorted(getattr(route, "methods", None) or {"*"})
    return f"{'|'.join(methods)} {getattr(route, 'path', route)}"


def check_routes(app: FastAPI) -> list[Any]:
    """Raise unless every route declares exactly one access; return the public routes (each has `matches`)."""
    problems, public_routes = [], []
    for route in effective_routes(app):
        declared = declared_access(route)
        if len(declared) != 1:
            problems.append(
                f"{route_label(route)}: "
                + ("declares no access" if not declared else f"declares {len(declared)} accesses")
            )
        elif declared[0].public:
            public_routes.append(route)
    if problems:
        raise UndeclaredRouteError(
            "every route must declare Depends(requires(<permission>)) or Depends(public(<reason>)): "
            + "; ".join(problems)
        )
    return public_routes


def document_access(app: FastAPI) -> None:
    """Each operation in the app's OpenAPI document says who may call it: `x-arrears-permission` (null =
    public), `x-arrears-roles`, and `security`. The authorisation matrix test and docs/security.md read it."""
    from .roles import ROLES

    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        for route in effective_routes(app):
            ops = schema.get("paths", {}).get(getattr(route, "path", ""), {})
            for method in getattr(route, "methods", None) or ():
                op = ops.get(method.lower())
                declared = declared_access(route)
                if op is None or len(declared) != 1:
                    continue
                acc = declared[0]
                op["x-arrears-permission"] = acc.permission
                op["x-arrears-roles"] = list(ROLES) if acc.public else list(roles_with(acc.permission or ""))
                if acc.public:
                    op["x-arrears-public"] = acc.reason
                    op["security"] = []
                else:
                    op["security"] = [{"bearer": []}, {"apiKey": []}]
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "API key (ark_...) or OIDC token"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
