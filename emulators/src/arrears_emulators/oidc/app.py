"""A local OpenID Connect issuer: discovery document and JWKS, as a company's identity provider serves them.

`create_app(state)` publishes the public halves of the given private keys (RSA or EC, made by the caller —
tests generate theirs) at `/jwks.json`, and `/.well-known/openid-configuration` names the issuer as the URL
it is reached at (or `issuer` when given), per OpenID Connect Discovery 1.0 §3/§4. `sign(...)` mints a token
with one of the keys, for tests and demos.

The authorization-code flow with PKCE (RFC 6749 §4.1, RFC 7636 S256 only, OpenID Connect Core §3.1) for the
users in `state.users`: `GET /authorize` shows a sign-in form, `POST /authorize` checks the password and
redirects to the client's registered `redirect_uri` with a one-time `code` (60 s); `POST /token` exchanges
it for an ID token (`aud` = client id, `nonce` echoed) and an access token (`aud` = `access_audience`) when
the `code_verifier` matches the challenge. Errors follow RFC 6749 §5.2 (`invalid_grant`, ...).
Control: `PUT /_emulator/keys/{kid}/retire` drops a key from the JWKS (rotation), `GET /_emulator/stats`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass
class SigningKey:
    kid: str
    private: PrivateKey
    alg: str = "RS256"

    def public_jwk(self) -> dict[str, Any]:
        if isinstance(self.private, rsa.RSAPrivateKey):
            text = jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key())
        else:
            text = jwt.algorithms.ECAlgorithm.to_jwk(self.private.public_key())
        jwk: dict[str, Any] = json.loads(text)
        return jwk | {"kid": self.kid, "use": "sig", "alg": self.alg}


@dataclass
class User:
    password: str
    claims: dict[str, Any]  # sub, email, roles, ...


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    username: str
    expires: float


@dataclass
class IssuerState:
    keys: list[SigningKey]
    issuer: str | None = None
    jwks_requests: int = 0
    retired: set[str] = field(default_factory=set)
    users: dict[str, User] = field(default_factory=dict)
    clients: dict[str, list[str]] = field(default_factory=dict)  # client id -> registered redirect URIs
    access_audience: str = "arrears"
    codes: dict[str, Grant] = field(default_factory=dict)
    tokens_issued: int = 0


def new_rsa_key(kid: str = "k1") -> SigningKey:
    return SigningKey(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")


def sign(
    key: SigningKey, claims: dict[str, Any], *, ttl_s: int = 300, headers: dict[str, Any] | None = None
) -> str:
    """A token signed with `key`; `iat` / `exp` are filled in unless `claims` sets them."""
    now = int(time.time())
    body = {"iat": now, "exp": now + ttl_s} | claims
    return jwt.encode(body, key.private, algorithm=key.alg, headers={"kid": key.kid} | (headers or {}))


def create_app(state: IssuerState) -> FastAPI:
    app = FastAPI(title="OIDC issuer emulator", docs_url=None, redoc_url=None, openapi_url=None)

    def issuer_of(request: Request) -> str:
        return state.issuer or str(request.base_url).rstrip("/")

    @app.get("/.well-known/openid-configuration")
    async def discovery(request: Request) -> dict[str, Any]:
        iss = issuer_of(request)
        return {
            "issuer": iss,
            "jwks_uri": f"{iss}/jwks.json",
            "authorization_endpoint": f"{iss}/authorize",
            "token_endpoint": f"{iss}/token",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": sorted({k.alg for k in state.keys}),
        }

    @app.get("/jwks.json")
    async def jwks() -> dict[str, Any]:
        state.jwks_requests += 1
        return {"keys": [k.public_jwk() for k in state.keys if k.kid not in state.retired]}

    def signing_key() -> SigningKey:
        return next(k for k in state.keys if k.kid not in state.retired)

    def check_client(client_id: str, redirect_uri: str) -> None:
        if redirect_uri not in state.clients.get(client_id, []):
            raise HTTPException(400, "unknown client_id or unregistered redirect_uri")

    @app.get("/authorize", response_class=HTMLResponse)
    async def authorize_form(
        client_id: str,
        redirect_uri: str,
        state_: str = Query("", alias="state"),
        code_challenge: str = "",
        code_challenge_method: str = "",
        response_type: str = "",
        nonce: str = "",
        scope: str = "",
    ) -> HTMLResponse:
        check_client(client_id, redirect_uri)
        if (
            response_type != "code"
            or code_challenge_method != "S256"
            or not code_challenge
            or "openid" not in scope
        ):
            raise HTTPException(400, "need response_type=code, scope openid and a S256 code_challenge (PKCE)")
        hidden = "".join(
            f'<input type="hidden" name="{k}" value="{escape(v)}">'
            for k, v in {
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "state": state_,
                "code_challenge": code_challenge,
                "nonce": nonce,
            }.items()
        )
        return HTMLResponse(
            "<!doctype html><html lang=en><head><meta charset=utf-8><title>Identity provider</title></head><body>"
            "<h1>Identity provider (emulator)</h1><form method=post action=/authorize>"
            f"{hidden}<label>User name <input name=username autocomplete=username></label> "
            "<label>Password <input name=password type=password></label> <button>Continue</button></form>"
            "</body></html>"
        )

    @app.post("/authorize")
    async def authorize(
        client_id: str = Form(...),
        redirect_uri: str = Form(...),
        state_: str = Form("", alias="state"),
        code_challenge: str = Form(...),
        nonce: str = Form(""),
        username: str = Form(...),
        password: str = Form(...),
    ) -> Response:
        check_client(client_id, redirect_uri)
        user = state.users.get(username)
        if user is None or not secrets.compare_digest(user.password, password):
            return HTMLResponse("<p>Wrong user name or password.</p>", status_code=401)
        code = secrets.token_urlsafe(24)
        state.codes[code] = Grant(
            client_id, redirect_uri, code_challenge, nonce or None, username, time.time() + 60
        )
        return RedirectResponse(
            f"{redirect_uri}?{urlencode({'code': code, 'state': state_})}", status_code=302
        )

    @app.post("/token")
    async def token(
        request: Request,
        grant_type: str = Form(...),
        code: str = Form(...),
        redirect_uri: str = Form(...),
        client_id: str = Form(...),
        code_verifier: str = Form(...),
    ) -> JSONResponse:
        def error(kind: str, why: str) -> JSONResponse:
            return JSONResponse({"error": kind, "error_description": why}, status_code=400)

        if grant_type != "authorization_code":
            return error("unsupported_grant_type", grant_type)
        grant = state.codes.pop(code, None)  # one use only
        if grant is None or grant.expires < time.time():
            return error("invalid_grant", "unknown, used or expired code")
        if grant.client_id != client_id or grant.redirect_uri != redirect_uri:
            return error("invalid_grant", "code issued to another client or redirect_uri")
        digest = (
            base64.urlsafe_b64encode(hashlib.sha256(code_verifier.encode()).digest()).rstrip(b"=").decode()
        )
        if not secrets.compare_digest(digest, grant.challenge):
            return error("invalid_grant", "code_verifier does not match the code_challenge")
        iss = issuer_of(request)
        claims = state.users[grant.username].claims
        key = signing_key()
        id_token = sign(
            key, {"iss": iss, "aud": client_id, **claims} | ({"nonce": grant.nonce} if grant.nonce else {})
        )
        access = sign(key, {"iss": iss, "aud": state.access_audience, **claims})
        state.tokens_issued += 1
        return JSONResponse(
            {"token_type": "Bearer", "expires_in": 300, "id_token": id_token, "access_token": access},
            headers={"Cache-Control": "no-store"},
        )

    @app.put("/_emulator/keys/{kid}/retire")
    async def retire(kid: str) -> dict[str, Any]:
        if kid not in {k.kid for k in state.keys}:
            raise HTTPException(404, "no such key")
        state.retired.add(kid)
        return {"retired": sorted(state.retired)}

    @app.get("/_emulator/stats")
    async def stats() -> dict[str, Any]:
        return {"jwks_requests": state.jwks_requests, "tokens_issued": state.tokens_issued}

    return app
