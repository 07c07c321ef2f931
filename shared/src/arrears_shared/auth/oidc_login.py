"""Signing people in with the company's identity provider: the OpenID Connect authorization-code flow with
PKCE (RFC 7636, S256), as a confidential or public client.

`begin()` stores a pending attempt (random `state`, `code_verifier`, `nonce`; only the state's hash is the
key, valid 10 minutes, used once) and returns the provider's authorization URL. `finish()` takes the
callback's `code` and `state`, exchanges the code at the token endpoint with the verifier, and verifies the
ID token (signature, issuer, audience = our client id, expiry, and the nonce) with the same `OidcVerifier`
as bearer tokens, so roles come from the same claim and role map.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .keys import SCHEMA
from .oidc import OidcVerifier, TokenError
from .principal import Principal

ATTEMPT_TTL = timedelta(minutes=10)


class SignInError(Exception):
    """The sign-in cannot complete; the message is safe to show."""


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def challenge_of(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@dataclass
class OidcLogin:
    verifier: OidcVerifier  # audience = our client id (ID tokens are addressed to the client)
    client_id: str
    client_secret: str | None = None
    http_timeout_s: float = 10.0

    async def _discovery(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=self.http_timeout_s) as client:
            r = await client.get(self.verifier.issuer.rstrip("/") + "/.well-known/openid-configuration")
            r.raise_for_status()
            doc: dict[str, Any] = r.json()
        if doc.get("issuer") != self.verifier.issuer:
            raise SignInError("the identity provider's discovery document names another issuer")
        return doc

    async def begin(self, conn: AsyncConnection, redirect_uri: str, *, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        state, verifier, nonce = (
            secrets.token_urlsafe(24),
            secrets.token_urlsafe(48),
            secrets.token_urlsafe(16),
        )
        await conn.execute(
            text(f"DELETE FROM {SCHEMA}.sign_in_attempts WHERE expires_at < :now"), {"now": now}
        )
        await conn.execute(
            text(
                f"""INSERT INTO {SCHEMA}.sign_in_attempts (state_hash, code_verifier, nonce, created_at, expires_at)
                VALUES (:h, :v, :n, :now, :exp)"""
            ),
            {"h": _hash(state), "v": verifier, "n": nonce, "now": now, "exp": now + ATTEMPT_TTL},
        )
        try:
            endpoint = (await self._discovery())["authorization_endpoint"]
        except (httpx.HTTPError, KeyError, ValueError) as e:
            raise SignInError("the identity provider is unreachable; try again or sign in with a key") from e
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": "openid email profile",
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge_of(verifier),
            "code_challenge_method": "S256",
        }
        return f"{endpoint}?{urlencode(query)}"

    async def finish(
        self, conn: AsyncConnection, code: str, state: str, redirect_uri: str, *, now: datetime | None = None
    ) -> Principal:
        now = now or datetime.now(UTC)
        row = (
            await conn.execute(
                text(
                    f"""DELETE FROM {SCHEMA}.sign_in_attempts WHERE state_hash = :h
                    RETURNING code_verifier, nonce, expires_at"""
                ),
                {"h": _hash(state)},
            )
        ).first()
        if row is None or row.expires_at <= now:
            raise SignInError("this sign-in has expired or was already used; start again")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": self.client_id,
            "code_verifier": row.code_verifier,
        }
        if self.client_secret:
            form["client_secret"] = self.client_secret
        try:
            endpoint = (await self._discovery())["token_endpoint"]
            async with httpx.AsyncClient(timeout=self.http_timeout_s) as client:
                r = await client.post(endpoint, data=form, headers={"accept": "application/json"})
        except (httpx.HTTPError, KeyError, ValueError) as e:
            raise SignInError("the identity provider is unreachable; try again") from e
        if r.status_code != 200:
            raise SignInError("the identity provider refused the sign-in; start again")
        id_token = r.json().get("id_token")
        if not isinstance(id_token, str):
            raise SignInError("the identity provider sent no ID token")
        try:
            principal = await self.verifier.verify(id_token)
            claims = jwt.decode(id_token, options={"verify_signature": False})  # verified just above
        except TokenError as e:
            raise SignInError(
                "your account has no Arrears role" if e.reason == "no_roles" else "the ID token is not valid"
            ) from e
        if not secrets.compare_digest(str(claims.get("nonce", "")), row.nonce):
            raise SignInError("the ID token does not answer this sign-in (nonce)")
        return principal
