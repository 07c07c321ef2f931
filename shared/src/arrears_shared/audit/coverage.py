"""Every change a person (or a key) makes through a service's API is in that service's audit log.

Routes write their own, specific entries (`record`, inside the transaction of the change). This middleware
is the net under them: when a state-changing request (POST, PUT, PATCH, DELETE) by an authenticated caller
succeeds and the route wrote no entry under the request's id, it writes one before the answer leaves —
`http.<method>` on the route's path template, with the path parameters and the status, attributed to the
caller — counts it (`arrears_audit_fallback_total{route}`) and logs a warning naming the route, so a route
that forgot its audit entry is both covered and found. Public routes (webhooks, sign-in) have no caller and
are not changes a person decides. A POST that changes nothing (a dry run) says so with
`Depends(changes_nothing("<why>"))`, and is not recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from sqlalchemy import text
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..auth.principal import Principal
from ..request_context import REQUEST_ID
from .chain import record

if TYPE_CHECKING:
    from ..service import Context

log = logging.getLogger(__name__)

CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RECENT = 1000  # entries looked at for the request's own (newest first, by primary key)
FALLBACK = Counter(
    "arrears_audit_fallback_total",
    "Successful changes whose route wrote no audit entry, recorded by the audit middleware",
    ["route"],
)


EXEMPT = "audit_exempt"


def changes_nothing(reason: str) -> Callable[[Request], None]:
    """Dependency for a state-changing method that changes no state (a dry run): no audit entry is owed."""
    if not reason:
        raise ValueError("say why the route changes nothing")

    def dependency(request: Request) -> None:
        request.scope.setdefault("state", {})[EXEMPT] = reason

    return dependency


async def audited(conn: Any, schema: str, request_id: str) -> bool:
    """Whether one of the newest entries of `schema`'s log was written under `request_id`."""
    row = await conn.execute(
        text(
            f"""SELECT EXISTS (SELECT 1 FROM (SELECT request_id FROM {schema}.audit_log ORDER BY seq DESC
                LIMIT {RECENT}) recent WHERE request_id = :rid)"""
        ),
        {"rid": request_id},
    )
    return bool(row.scalar())


class AuditEveryChange:
    def __init__(self, app: ASGIApp, get_context: Callable[[], Context | None]) -> None:
        self.app = app
        self.get_context = get_context
        self._has_log: bool | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in CHANGES:
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})  # the gate puts the caller here

        async def send_checked(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400 and EXEMPT not in state:
                who = state.get("principal")
                if isinstance(who, Principal):
                    await self._ensure(scope, who, message["status"])
            await send(message)

        await self.app(scope, receive, send_checked)

    async def _ensure(self, scope: Scope, who: Principal, status: int) -> None:
        ctx = self.get_context()
        rid = REQUEST_ID.get()
        if ctx is None or rid is None or not await self._keeps_log(ctx):
            return
        route = getattr(scope.get("route"), "path", None) or scope.get("path", "?")
        try:
            async with ctx.engine.begin() as conn:
                if await audited(conn, ctx.schema, rid):
                    return
                await record(
                    conn,
                    ctx.schema,
                    who,
                    f"http.{scope['method'].lower()}",
                    "route",
                    route,
                    after={"path_params": dict(scope.get("path_params") or {}), "status": status},
                )
        except Exception:  # the change is committed; its answer must not be lost to a failed net entry
            log.exception("could not write the audit entry of a change", extra={"route": route})
            return
        FALLBACK.labels(route).inc()
        log.warning(
            "a change was not audited by its route: recorded by the audit middleware",
            extra={"route": route, "method": scope["method"]},
        )

    async def _keeps_log(self, ctx: Context) -> bool:
        if self._has_log is None:
            async with ctx.engine.connect() as conn:
                found = await conn.execute(
                    text("SELECT to_regclass(:t) IS NOT NULL"), {"t": f"{ctx.schema}.audit_log"}
                )
                self._has_log = bool(found.scalar())
        return self._has_log
