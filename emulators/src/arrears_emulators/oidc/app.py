"""A local OpenID Connect issuer: discovery document and JWKS, as a company's identity provider serves them.

`create_app(keys)` publishes the public halves of the given private keys (RSA or EC, made by the caller —
tests generate theirs) at `/jwks.json`, and `/.well-known/openid-configuration` names the issuer as the URL
it is reached at (or `issuer` when given), per OpenID Connect Discovery 1.0 §3/§4. `sign(...)` mints a token
with one of the keys, for tests and demos; the real provider's token endpoint is not emulated here.
Control: `PUT /_emulator/keys/{kid}/retire` drops a key from the JWKS (rotation), `GET /_emulator/stats`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI, HTTPException, Request

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
class IssuerState:
    keys: list[SigningKey]
    issuer: str | None = None
    jwks_requests: int = 0
    retired: set[str] = field(default_factory=set)


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

    @app.put("/_emulator/keys/{kid}/retire")
    async def retire(kid: str) -> dict[str, Any]:
        if kid not in {k.kid for k in state.keys}:
            raise HTTPException(404, "no such key")
        state.retired.add(kid)
        return {"retired": sorted(state.retired)}

    @app.get("/_emulator/stats")
    async def stats() -> dict[str, Any]:
        return {"jwks_requests": state.jwks_requests}

    return app
