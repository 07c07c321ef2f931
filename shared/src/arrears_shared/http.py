"""FastAPI app factory: every service gets `/healthz`, `/readyz`, `/metrics` and the security layer the same way.

- Every route must declare its access (`requires(permission)` or `public(reason)`, arrears_shared.auth);
  `create_app` raises at start-up when one does not, so a new route cannot serve openly.
- The gate authenticates every non-public request before routing; `/openapi.json` and `/docs` need a
  credential too. Public: `/healthz`, `/readyz`, `/metrics` and signature-verified webhooks.
- Request bodies are capped (`ARREARS_HTTP_MAX_BODY_BYTES`, per-path overrides for uploads); every response
  carries `X-Request-ID`.
- Text no service can store or publish (a NUL character, a lone surrogate) in a path or query value or in a
  JSON or form body is refused with 422 before any handler runs (`reject_unstorable_text`).
- Errors are `{"detail": ...}`: FastAPI's list of validation errors, or a handler's message; each
  operation's 422 documents both (`document_errors`).

- `/healthz` (liveness) never touches the database or broker, so an outage does not restart every pod;
  it fails only when a consumer is stuck (partitions assigned, lag > 0, no progress for
  `ARREARS_RUNNER_STUCK_AFTER_S`) or a background task has died.
- `/readyz` checks the database, the broker and that each consumer joined its group; extra checks can be
  registered by the service (their detail is shown, e.g. ingest's degraded sheet source).
- Every request is timed into `arrears_http_request_seconds{service,method,route,status}` (`RequestMetrics`),
  labelled with the route template, never the raw path, so the series stay few.
"""

from __future__ import annotations

import asyncio
import json
import time
import types
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union, get_args, get_origin
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import telemetry
from .auth.access import check_routes, document_access, effective_routes, public, requires
from .auth.gate import Authenticator, AuthGate
from .body_limit import BodySizeLimit
from .redact import describe_error
from .request_context import RequestId

Check = Callable[[], Awaitable[tuple[bool, Any]]]


@dataclass
class Health:
    liveness: dict[str, Callable[[], tuple[bool, Any]]] = field(default_factory=dict)
    readiness: dict[str, Check] = field(default_factory=dict)

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        names = list(self.readiness)
        results = await asyncio.gather(*(self._run(self.readiness[n]) for n in names))
        detail = {n: {"ok": ok, "detail": d} for n, (ok, d) in zip(names, results, strict=True)}
        return all(ok for ok, _ in results), detail

    @staticmethod
    async def _run(check: Check) -> tuple[bool, Any]:
        try:
            return await asyncio.wait_for(check(), timeout=2.0)
        except Exception as e:
            return False, describe_error(e)  # probes are public: never a raw error text

    def live(self) -> tuple[bool, dict[str, Any]]:
        detail = {}
        ok = True
        for name, check in self.liveness.items():
            good, d = check()
            ok = ok and good
            detail[name] = {"ok": good, "detail": d}
        return ok, detail


class RequestMetrics:
    """Times each HTTP request, from the first byte in to the last byte out, into
    `arrears_http_request_seconds`. `route` is the matched route's template (`/accounts/{account_id}`),
    also for requests the gate refused before routing; `unmatched` when no route matches (a 404). Methods
    outside the standard set count as `other`. An exception is counted as a 500; a request cancelled before
    its response started (client gone, shutdown) as 499, so it never looks like a server error."""

    METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

    def __init__(self, app: ASGIApp, *, service: str, routes: Sequence[BaseRoute]) -> None:
        """`routes`: what the router serves (`effective_routes(app)`), matched when the gate refused a request
        before routing."""
        self.app, self.service, self.routes = app, service, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: int | None = None  # of the response, once it started
        failed = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except asyncio.CancelledError:
            failed = 499  # nginx's "client closed request"
            raise
        finally:
            method = scope["method"] if scope["method"] in self.METHODS else "other"
            telemetry.HTTP_SECONDS.labels(
                self.service, method, self.route(scope), str(status if status is not None else failed)
            ).observe(time.perf_counter() - started)

    def route(self, scope: Scope) -> str:
        matched = scope.get("route")  # set by the router when the request got that far
        if matched is None:
            partial = None
            for candidate in self.routes:
                match, _ = candidate.matches(scope)
                if match is Match.FULL:
                    matched = candidate
                    break
                if match is Match.PARTIAL and partial is None:
                    partial = candidate  # path matches, method does not (a 405)
            matched = matched or partial
        template = getattr(matched, "path_format", None) or getattr(matched, "path", None)
        return template if isinstance(template, str) and template else "unmatched"


OPS_PUBLIC = "probes and Prometheus scrapes; answer no business data (keep /metrics inside the cluster)"


def unstorable(text: str) -> str | None:
    """Why `text` can be neither stored nor published (None: it can): PostgreSQL's text and JSON types
    cannot hold a NUL character, and a lone surrogate (`json.loads` lets `"\\ud800"` through) is not
    Unicode, so it cannot be encoded as UTF-8."""
    if "\x00" in text:
        return "text must not contain NUL characters"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text must be valid Unicode (it has a lone surrogate)"
    return None


def _shown(text: str) -> str:
    """`text` with what `unstorable` refuses replaced, to name a location in an answer."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def _find_unstorable(value: Any, loc: tuple[str | int, ...], out: list[dict[str, Any]]) -> None:
    """Append an error for each string (or key) in `value` that `unstorable` refuses, at most 20; without
    recursion (the document may be as deep as `json.loads` goes)."""
    todo: list[tuple[Any, tuple[str | int, ...]]] = [(value, loc)]
    while todo and len(out) < 20:
        node, at = todo.pop()
        if isinstance(node, str):
            if why := unstorable(node):
                out.append({"type": "string_unstorable", "loc": at, "msg": why})
        elif isinstance(node, dict):
            for k, v in reversed(node.items()):
                if isinstance(k, str) and (why := unstorable(k)):
                    out.append({"type": "string_unstorable", "loc": (*at, _shown(k)), "msg": f"a key: {why}"})
                todo.append((v, (*at, _shown(str(k)))))
        elif isinstance(node, list):
            todo.extend((v, (*at, i)) for i, v in reversed(list(enumerate(node))))


_SCALARS: dict[int, frozenset[str]] = {}


def _takes_many(annotation: Any) -> bool:
    """Whether a query parameter's annotation is a list (`list[str] | None` too)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_takes_many(a) for a in get_args(annotation) if a is not type(None))
    return origin in (list, set, frozenset, tuple) or annotation in (list, set, frozenset, tuple)


def _scalar_query_params(route: Any) -> frozenset[str]:
    """The query parameters of `route` that take one value (not a list), by their name in the URL."""
    if route is None or not hasattr(route, "dependant"):
        return frozenset()
    found = _SCALARS.get(id(route))
    if found is None:
        names: set[str] = set()
        todo = [route.dependant]
        while todo:
            dep = todo.pop()
            todo.extend(dep.dependencies)
            for f in dep.query_params:
                if not _takes_many(f.field_info.annotation):
                    names.add(f.alias)
        found = _SCALARS[id(route)] = frozenset(names)
    return found


async def reject_unstorable_text(request: Request) -> None:
    """Every route's first dependency: a path or query value, or a string in a JSON or form body, with a NUL
    character or a lone surrogate is answered 422 in FastAPI's validation shape (`loc`, `msg`, `type`),
    before a handler stores or publishes it (PostgreSQL would refuse it with a 500, or a consumer would
    dead-letter the event). Other bodies (CSV, XLSX, YAML) are their parsers' business. A single-valued
    query parameter given twice (`?cursor=a&cursor=b`) is refused the same way rather than read as its
    last value."""
    errors: list[dict[str, Any]] = []
    for name, value in request.path_params.items():
        _find_unstorable(value, ("path", name), errors)
    for name, value in request.query_params.multi_items():
        _find_unstorable(value, ("query", _shown(name)), errors)
    for name in _scalar_query_params(request.scope.get("route")):
        if len(request.query_params.getlist(name)) > 1:  # FastAPI would silently keep the last one
            errors.append(
                {
                    "loc": ("query", name),
                    "msg": "given more than once; it takes one value",
                    "type": "repeated",
                }
            )
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        try:
            body = json.loads(await request.body())
        except (ValueError, RecursionError):  # malformed or nested too deeply: FastAPI answers it itself
            body = None  # (400 / 422), or the route reads it raw and refuses it
        _find_unstorable(body, ("body",), errors)
    elif ctype == "application/x-www-form-urlencoded":
        try:
            raw = await request.body()
        except RuntimeError:  # FastAPI parsed the form already (the route takes form fields): its copy
            fields = [(k, v) for k, v in (await request.form()).multi_items() if isinstance(v, str)]
        else:
            fields = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        for name, value in fields:
            _find_unstorable(value, ("body", _shown(name)), errors)
    if errors:
        raise RequestValidationError(errors)


ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "title": "Detail",
            "anyOf": [
                {"type": "string"},
                {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}}},
            ],
        }
    },
    "description": "An error a handler raised itself: a message, or an object with a `message` and details",
}


def document_errors(app: FastAPI) -> None:
    """Each operation's 422 answer documents both shapes the platform sends: FastAPI's list of validation
    errors (`HTTPValidationError`) and an `Error` a handler raised (`{"detail": "..."}`); FastAPI documents
    only the first. An operation that documents its own 422 body keeps it."""
    generate = app.openapi
    validation = {"$ref": "#/components/schemas/HTTPValidationError"}

    def openapi() -> dict[str, Any]:
        schema = generate()
        schema.setdefault("components", {}).setdefault("schemas", {}).setdefault("Error", ERROR_SCHEMA)
        for ops in schema.get("paths", {}).values():
            for op in ops.values():
                content = op.get("responses", {}).get("422", {}).get("content", {}).get("application/json")
                if content is not None and content.get("schema") == validation:
                    content["schema"] = {"anyOf": [validation, {"$ref": "#/components/schemas/Error"}]}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    service: str,
    health: Health,
    routers: Sequence[APIRouter] = (),
    *,
    authenticator: Authenticator,
    max_body_bytes: int = 1_048_576,
    body_limits: dict[str, int] | None = None,
    login_path: str | None = None,
    **fastapi_kw: Any,
) -> FastAPI:
    app = FastAPI(
        title=f"Arrears {service}",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=[Depends(reject_unstorable_text)],
        **fastapi_kw,
    )
    ops = [Depends(public(OPS_PUBLIC))]

    @app.get("/healthz", tags=["ops"], dependencies=ops)
    async def healthz() -> JSONResponse:
        ok, detail = health.live()
        return JSONResponse(
            {"status": "ok" if ok else "failing", "checks": detail}, status_code=200 if ok else 503
        )

    @app.get("/readyz", tags=["ops"], dependencies=ops)
    async def readyz() -> JSONResponse:
        ok, detail = await health.ready()
        return JSONResponse(
            {"status": "ready" if ok else "not_ready", "checks": detail}, status_code=200 if ok else 503
        )

    @app.get("/metrics", tags=["ops"], dependencies=ops, response_class=PlainTextResponse)
    async def metrics(request: Request) -> Response:
        """Prometheus scrapes pods directly; a request that came through a proxy or the Ingress (it carries
        Forwarded / X-Forwarded-For) is from outside the cluster and gets 404."""
        if "x-forwarded-for" in request.headers or "forwarded" in request.headers:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    docs = [Depends(requires("docs.read"))]

    @app.get("/openapi.json", include_in_schema=False, dependencies=docs)
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False, dependencies=docs)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)

    for r in routers:
        app.include_router(r)
    public_routes = check_routes(app)
    document_access(app)
    document_errors(app)
    # added last = outermost: request id, then the gate (nothing read before authentication), then sizes
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes, overrides=body_limits or {})
    app.state.authenticator = authenticator
    app.add_middleware(
        AuthGate, authenticator=authenticator, public_routes=public_routes, login_path=login_path
    )
    app.add_middleware(RequestId)
    # outermost: times it all; the routes as served (full paths, included routers flattened)
    app.add_middleware(RequestMetrics, service=service, routes=effective_routes(app))
    return app
