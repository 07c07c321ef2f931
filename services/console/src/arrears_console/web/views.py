"""`GET /`: the dashboard; `/login` (API key), `/auth/login` + `/auth/callback` (the identity provider,
authorization code with PKCE) and `/logout`: console sessions in an HttpOnly, Secure, SameSite=Lax cookie
(Lax, not Strict: the provider's redirect back is a cross-site navigation, and a Strict cookie set there is
not sent on the redirect that follows; every change still needs the session's CSRF token). The session
itself lives in the `iam` schema (arrears_shared.auth.sessions)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from arrears_shared.audit import record
from arrears_shared.auth import Principal, public, requires
from arrears_shared.auth import sessions as auth_sessions
from arrears_shared.auth.gate import AuthFailure, client_address
from arrears_shared.auth.oidc import OidcVerifier, parse_role_map
from arrears_shared.auth.oidc_login import OidcLogin, SignInError
from arrears_shared.service import Context
from arrears_shared.settings import AuthSettings
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel

from ..readmodels import service
from ..readmodels.views import today_utc
from ..settings import ConsoleSettings
from .page import render
from .templating import env, page

SIGN_IN_PUBLIC = "the sign-in form and its submission: shows no data; failures are throttled per address"


class Me(BaseModel):
    name: str
    roles: list[str]
    kind: str
    team: str | None
    permissions: list[str]


def _login_page(message: str = "", status: int = 200, provider: str = "") -> HTMLResponse:
    return HTMLResponse(
        env.get_template("login.html").render(message=message, oidc=provider), status_code=status
    )


def _provider(settings: AuthSettings) -> str:
    """The identity provider's host, when people may sign in with it."""
    if not (settings.auth_oidc_issuer and settings.auth_oidc_client_id):
        return ""
    return urlsplit(settings.auth_oidc_issuer).hostname or "your company account"


def _login_flow(settings: AuthSettings) -> OidcLogin:
    assert settings.auth_oidc_issuer and settings.auth_oidc_client_id
    verifier = OidcVerifier(
        issuer=settings.auth_oidc_issuer,
        audience=settings.auth_oidc_client_id,
        jwks_url=settings.auth_oidc_jwks_url,
        roles_claim=settings.auth_oidc_roles_claim,
        name_claim=settings.auth_oidc_name_claim,
        role_map=parse_role_map(settings.auth_oidc_role_map),
        leeway_s=settings.auth_oidc_leeway_s,
    )
    secret = settings.auth_oidc_client_secret
    return OidcLogin(verifier, settings.auth_oidc_client_id, secret.get_secret_value() if secret else None)


STATIC = Path(__file__).parent / "static"
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


def web_router(get_context: Callable[[], Context]) -> APIRouter:
    router = APIRouter(tags=["web"])
    sign_in = [Depends(public(SIGN_IN_PUBLIC))]

    @router.get("/static/{name}", dependencies=[Depends(public("the console's CSS and JavaScript: no data"))])
    async def static(name: str) -> Response:
        path = STATIC / name
        if "/" in name or path.suffix not in STATIC_TYPES or not path.is_file():
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return Response(
            path.read_bytes(), media_type=STATIC_TYPES[path.suffix], headers={"Cache-Control": "max-age=300"}
        )

    @router.get("/", response_class=HTMLResponse)
    async def index(
        request: Request, fragment: str | None = None, who: Principal = Depends(requires("reports.read"))
    ) -> HTMLResponse:
        ctx = get_context()
        settings = cast(ConsoleSettings, ctx.settings)
        async with ctx.engine.connect() as conn:
            body = render(
                aging=await service.aging(conn, ctx.schema, today_utc()),
                summary=await service.summary(conn, ctx.schema),
                timeline=await service.timeline(conn, ctx.schema, None, 25) if who.sees_pii else None,
                dlq=await service.dlq(conn, ctx.schema, 20) if who.can("dlq.read") else None,
                rejects=await service.rejects(conn, ctx.schema, 20) if who.can("ingest.read") else None,
            )
        if fragment == "dashboard":
            return HTMLResponse(body)
        return page(
            request, who, "dashboard.html", body=body, as_of=today_utc(), refresh_s=settings.console_refresh_s
        )

    @router.get("/login", response_class=HTMLResponse, dependencies=sign_in)
    async def login_form() -> HTMLResponse:
        return _login_page(provider=_provider(get_context().settings))

    def callback_url(request: Request) -> str:
        return get_context().settings.auth_oidc_redirect_url or str(request.url_for("auth_callback"))

    async def open_session_for(principal: Principal) -> Response:
        ctx = get_context()
        ttl = timedelta(seconds=ctx.settings.auth_session_ttl_s)
        async with ctx.transaction() as tx:
            token, _ = await auth_sessions.open_session(tx.conn, principal, ttl)
            await record(tx.conn, ctx.schema, principal, "session.open", "session", principal.subject)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            auth_sessions.COOKIE,
            token,
            max_age=int(ttl.total_seconds()),
            httponly=True,
            secure=ctx.settings.auth_cookie_secure,
            samesite="lax",  # the identity provider's redirect back is a cross-site top-level GET
            path="/",
        )
        return response

    @router.get("/auth/login", dependencies=sign_in, response_class=HTMLResponse)
    async def auth_login(request: Request) -> Response:
        """Start signing in with the identity provider (authorization code + PKCE)."""
        ctx = get_context()
        if not _provider(ctx.settings):
            return _login_page("Signing in with an identity provider is not configured.", 404)
        try:
            async with ctx.engine.begin() as conn:
                url = await _login_flow(ctx.settings).begin(conn, callback_url(request))
        except SignInError as e:
            return _login_page(str(e), 502, _provider(ctx.settings))
        return RedirectResponse(url, status_code=303)

    @router.get("/auth/callback", name="auth_callback", dependencies=sign_in, response_class=HTMLResponse)
    async def auth_callback(
        request: Request,
        code: str = Query("", max_length=2000),
        state: str = Query("", max_length=200),
        error: str = Query("", max_length=200),
    ) -> Response:
        ctx = get_context()
        provider = _provider(ctx.settings)
        if not provider:
            return _login_page("Signing in with an identity provider is not configured.", 404)
        if error or not code or not state:
            return _login_page("The identity provider did not sign you in.", 401, provider)
        try:
            async with ctx.engine.begin() as conn:
                principal = await _login_flow(ctx.settings).finish(conn, code, state, callback_url(request))
        except SignInError as e:
            return _login_page(str(e), 401, provider)
        return await open_session_for(principal)

    @router.post("/login", response_class=HTMLResponse, dependencies=sign_in)
    async def login(request: Request, api_key: str = Form(..., max_length=200)) -> Response:
        authn = request.app.state.authenticator
        client = client_address(request.scope)
        if authn.throttle.blocked_for(client):
            return _login_page("Too many failed attempts; wait a minute.", 429)
        try:
            principal = await authn.api_key(api_key.strip())
        except AuthFailure as e:  # a wrong secret for a known key also counts towards its lockout
            authn.throttle.record_failure(client)
            return _login_page(e.detail if e.reason == "locked" else "That key is not valid.", 401)
        return await open_session_for(principal)

    @router.post("/logout")
    async def logout(request: Request, who: Principal = Depends(requires("session.own"))) -> Response:
        ctx = get_context()
        token = request.cookies.get(auth_sessions.COOKIE)
        async with ctx.transaction() as tx:
            if token:
                await auth_sessions.close_session(tx.conn, token)
            await record(tx.conn, ctx.schema, who, "session.close", "session", who.subject)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(auth_sessions.COOKIE, path="/")
        return response

    @router.get("/api/me", response_model=Me)
    async def me(who: Principal = Depends(requires("session.own"))) -> Me:
        return Me(
            name=who.name,
            roles=sorted(who.roles),
            kind=who.kind,
            team=who.team,
            permissions=sorted(who.permissions),
        )

    return router
