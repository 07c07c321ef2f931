"""The gate: authenticates every request before routing, except on the routes declared public.

Pure ASGI, so nothing (not a multipart upload, not a JSON body) is read for a caller without a valid
credential. Credentials, in order: `Authorization: Bearer <API key | OIDC token>`, `X-API-Key: <API key>`,
the console's session cookie. With the cookie, a state-changing method must also carry the session's CSRF
token in `X-CSRF-Token` (cookies ride along on cross-site requests; a header or form field cannot).

Answers never say which part was wrong: 401 `authentication required` (no credential) or `invalid or expired
credentials` (anything else); the reason goes to the `arrears_auth_failures_total{reason}` metric and a log
line without the credential. Failures are counted per client address (`FailureThrottle`), and a wrong secret
for a known key also against that key (lockout.py): a locked key is the one answer that says so (`this API key
(<id>) is locked …`), for any secret, so it tells a guesser nothing. Every answered read of an
account-disclosing route is counted for the unusual-access alert (unusual_access.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from ..settings import AuthSettings
from . import keys, metrics, sessions
from .access import declared_access
from .lockout import KeyLocked, LockoutPolicy
from .oidc import OidcVerifier, TokenError, looks_like_jwt, parse_role_map
from .principal import Principal
from .roles import PII_PERMISSION
from .throttle import FailureThrottle
from .unusual_access import AccessPolicy, AccessWatch

log = logging.getLogger(__name__)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class AuthFailure(Exception):
    def __init__(self, status: int, reason: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.detail = status, reason, detail
        self.headers = headers or {}


def _unauthorized(reason: str, *, missing: bool = False) -> AuthFailure:
    if missing:
        return AuthFailure(401, reason, "authentication required", {"WWW-Authenticate": "Bearer"})
    return AuthFailure(
        401, reason, "invalid or expired credentials", {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    )


class Authenticator:
    """Turns a request's credential into a Principal. One per service process; bound to the database once
    the service host has connected."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self.engine: AsyncEngine | None = None
        self.session_ttl = timedelta(seconds=settings.auth_session_ttl_s)
        self.oidc: OidcVerifier | None = None
        if settings.auth_oidc_issuer:
            self.oidc = OidcVerifier(
                issuer=settings.auth_oidc_issuer,
                audience=settings.auth_oidc_audience,
                jwks_url=settings.auth_oidc_jwks_url,
                roles_claim=settings.auth_oidc_roles_claim,
                name_claim=settings.auth_oidc_name_claim,
                role_map=parse_role_map(settings.auth_oidc_role_map),
                leeway_s=settings.auth_oidc_leeway_s,
                cache_s=settings.auth_jwks_cache_s,
            )
        self.throttle = FailureThrottle(
            window_s=settings.auth_failure_window_s,
            slowdown_after=settings.auth_failure_slowdown_after,
            block_after=settings.auth_failure_block_after,
        )
        self.service = str(getattr(settings, "service_name", "") or "")
        self.lockout = LockoutPolicy.from_settings(settings)
        self.access = AccessWatch(AccessPolicy.from_settings(settings), self.service)

    def bind(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.access.engine = engine

    def _engine(self) -> AsyncEngine:
        if self.engine is None:
            raise AuthFailure(503, "starting", "service is starting", {"Retry-After": "1"})
        return self.engine

    async def api_key(self, key: str) -> Principal:
        """The key's principal. A wrong secret for a known key counts towards its lockout (lockout.py); a
        locked key is refused with a message saying so, whatever the secret."""
        try:
            async with self._engine().connect() as conn:
                principal = await keys.authenticate(conn, key, lockout=self.lockout, service=self.service)
        except KeyLocked as e:
            raise AuthFailure(
                401, "locked", str(e), {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            ) from None
        if principal is None:
            raise _unauthorized("api_key")
        return principal

    async def token(self, token: str) -> Principal:
        if self.oidc is None:
            raise _unauthorized("token_not_configured")
        try:
            return await self.oidc.verify(token)
        except TokenError as e:
            log.info("bearer token refused", extra={"reason": e.reason})
            raise _unauthorized(f"token_{e.reason}") from e

    async def session(self, token: str, method: str, csrf: str | None) -> Principal:
        async with self._engine().connect() as conn:
            found = await sessions.session_principal(conn, token)
        if found is None:
            raise _unauthorized("session")
        principal, expected = found
        if method not in SAFE_METHODS and not sessions.csrf_matches(expected, csrf):
            raise AuthFailure(403, "csrf", "missing or wrong CSRF token (send X-CSRF-Token or ?csrf_token=)")
        return principal.with_csrf(expected)

    async def authenticate(
        self, headers: dict[str, str], method: str, query_csrf: str | None = None
    ) -> Principal:
        authorization = headers.get("authorization", "")
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if authorization and scheme.lower() != "bearer":
            raise _unauthorized("scheme")
        if credential:
            if credential.startswith(keys.PREFIX):
                return await self.api_key(credential)
            if looks_like_jwt(credential):
                return await self.token(credential)
            raise _unauthorized("malformed")
        if headers.get("x-api-key"):
            return await self.api_key(headers["x-api-key"].strip())
        cookie = headers.get("cookie")
        if cookie:
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(cookie)
            except Exception:
                raise _unauthorized("cookie") from None
            if sessions.COOKIE in jar:
                csrf = headers.get("x-csrf-token") or query_csrf
                return await self.session(jar[sessions.COOKIE].value, method, csrf)
        raise _unauthorized("missing", missing=True)


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


class AuthGate:
    """ASGI middleware: 401 / 403 / 429 before routing for every route that is not public."""

    def __init__(
        self,
        app: ASGIApp,
        authenticator: Authenticator,
        public_routes: Sequence[Any],
        login_path: str | None = None,
    ) -> None:
        self.app = app
        self.authn = authenticator
        self.public_routes = list(public_routes)
        self.login_path = login_path  # a browser without a credential is sent there instead of a 401
        self._permissions: dict[int, str] = {}  # route -> its declared permission, for counting reads

    def _browser(self, scope: Scope, headers: dict[str, str]) -> bool:
        return bool(self.login_path) and scope["method"] == "GET" and "text/html" in headers.get("accept", "")

    def _is_public(self, scope: Scope) -> bool:
        return any(r.matches(scope)[0] is Match.FULL for r in self.public_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._is_public(scope):
            await self.app(scope, receive, send)
            return
        client = client_address(scope)
        wait = self.authn.throttle.blocked_for(client)
        if wait > 0:
            metrics.THROTTLED.inc()
            await _answer(
                send,
                429,
                "too many failed authentication attempts from this address; retry later",
                {"Retry-After": str(int(wait) + 1)},
            )
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        try:
            principal = await self.authn.authenticate(headers, scope["method"], _query_csrf(scope))
        except AuthFailure as e:
            if e.reason == "missing" and self._browser(scope, headers):
                await _answer(send, 303, "sign in first", {"Location": f"{self.login_path}"})
                return
            if e.status == 401:
                metrics.FAILURES.labels(e.reason).inc()
            if e.status == 401 and e.reason != "missing":  # a wrong credential is a guess; none is not
                delay = self.authn.throttle.record_failure(client)
                if delay:
                    await asyncio.sleep(delay)
            await _answer(send, e.status, e.detail, e.headers)
            return
        metrics.AUTHENTICATED.labels(principal.kind).inc()
        scope.setdefault("state", {})["principal"] = principal
        status: list[int] = []

        async def watch(message: Any) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        self._count_read(scope, principal, status[0] if status else 500)
        self.authn.access.tick()

    def _count_read(self, scope: Scope, principal: Principal, status: int) -> None:
        """An answered request to an account-disclosing route (`accounts.read` with an `{account_id}`)
        counts as a read of that account (unusual_access.py); a 404 too, as a probe for an id."""
        account = scope.get("path_params", {}).get("account_id")
        if not account or not (200 <= status < 300 or status == 404):
            return
        route = scope.get("route")
        if route is None:
            return
        permission = self._permissions.get(id(route))
        if permission is None:
            declared = declared_access(route)
            permission = self._permissions[id(route)] = declared[0].permission or "" if declared else ""
        if permission == PII_PERMISSION:
            self.authn.access.note(principal, str(account))


def _query_csrf(scope: Scope) -> str | None:
    """The CSRF token of an HTML form, sent in its action's query string (the gate reads no bodies)."""
    qs = scope.get("query_string", b"")
    if b"csrf_token=" not in qs:
        return None
    from urllib.parse import parse_qs

    values = parse_qs(qs.decode("latin-1")).get("csrf_token")
    return values[0] if values else None


async def _answer(send: Send, status: int, detail: str, headers: dict[str, str]) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
