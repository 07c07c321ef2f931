"""Bearer tokens from the company's identity provider (OIDC access or ID tokens, JWT), verified with PyJWT.

Checked: signature against the provider's JWKS (fetched from `jwks_uri` in the issuer's discovery document,
or a configured URL), algorithm from an allow-list (never `none`, never an HMAC algorithm: a public JWKS key
must not double as a shared secret), `iss`, `aud`, `exp`, `nbf`, `iat` with a small leeway. Roles come from a
configurable claim (a dotted path such as `realm_access.roles`), optionally renamed by a role map
(`idp-group=role`). A token that grants none of our roles is refused (401): it authenticates nobody here.

The JWKS is cached; an unknown `kid` (the provider rotated its keys) refetches it, at most once every
`refresh_min_s`, so a flood of forged kids cannot turn into a flood of requests to the provider.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from .principal import Principal
from .roles import ROLES

ALLOWED_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)


class TokenError(Exception):
    """The token is not acceptable; the message says why (for logs and metrics, never for the caller)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2 and value.startswith("ey")


def parse_role_map(spec: str) -> dict[str, str]:
    """`idp-name=role,...` -> {idp-name: role}."""
    out: dict[str, str] = {}
    for item in (x.strip() for x in spec.split(",") if x.strip()):
        src, sep, dst = item.partition("=")
        if not sep or dst.strip() not in ROLES:
            raise ValueError(f"role map entry {item!r} is not <idp role>=<{'|'.join(ROLES)}>")
        out[src.strip()] = dst.strip()
    return out


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


@dataclass
class OidcVerifier:
    issuer: str
    audience: str
    jwks_url: str | None = None
    roles_claim: str = "roles"
    name_claim: str = "email"
    role_map: dict[str, str] = field(default_factory=dict)
    algorithms: tuple[str, ...] = ALLOWED_ALGORITHMS
    leeway_s: float = 30.0
    cache_s: float = 600.0
    refresh_min_s: float = 30.0
    http_timeout_s: float = 5.0
    _jwks: jwt.PyJWKSet | None = field(default=None, init=False, repr=False)
    _fetched_at: float = field(default=float("-inf"), init=False, repr=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        bad = [a for a in self.algorithms if a not in ALLOWED_ALGORITHMS]
        if bad:
            raise ValueError(f"algorithms not allowed for OIDC tokens: {bad}")

    async def _discover_jwks_url(self, client: httpx.AsyncClient) -> str:
        r = await client.get(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
        r.raise_for_status()
        doc = r.json()
        if doc.get("issuer") != self.issuer:
            raise TokenError(
                "discovery", f"issuer in discovery is {doc.get('issuer')!r}, expected {self.issuer!r}"
            )
        return str(doc["jwks_uri"])

    async def _refresh(self, *, force: bool) -> jwt.PyJWKSet:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if self._jwks is not None and (age < self.refresh_min_s or (not force and age < self.cache_s)):
                return self._jwks
            try:
                async with httpx.AsyncClient(timeout=self.http_timeout_s) as client:
                    if self.jwks_url is None:
                        self.jwks_url = await self._discover_jwks_url(client)
                    r = await client.get(self.jwks_url)
                    r.raise_for_status()
                    self._jwks = jwt.PyJWKSet.from_dict(r.json())
            except (httpx.HTTPError, ValueError, KeyError, jwt.PyJWKSetError) as e:
                self._fetched_at = time.monotonic()  # do not hammer a provider that is down
                if self._jwks is None:
                    raise TokenError("jwks_unavailable", f"{type(e).__name__}: {e}"[:200]) from e
                return self._jwks
            self._fetched_at = time.monotonic()
            return self._jwks

    async def _key_for(self, kid: str | None) -> jwt.PyJWK:
        jwks = self._jwks if self._jwks is not None else await self._refresh(force=False)
        for attempt in range(2):
            for k in jwks.keys:
                if kid is None or k.key_id == kid:
                    return k
            if attempt == 0:
                jwks = await self._refresh(force=True)
        raise TokenError("unknown_key", f"no key {kid!r} in the provider's JWKS")

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise TokenError("malformed", str(e)) from e
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise TokenError("algorithm", f"{alg!r} is not allowed")
        if time.monotonic() - self._fetched_at > self.cache_s:
            await self._refresh(force=False)
        key = await self._key_for(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_s,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as e:
            raise TokenError("expired") from e
        except jwt.InvalidAudienceError as e:
            raise TokenError("audience") from e
        except jwt.InvalidIssuerError as e:
            raise TokenError("issuer") from e
        except jwt.PyJWTError as e:
            raise TokenError("invalid", str(e)) from e
        return self.principal(claims)

    def principal(self, claims: dict[str, Any]) -> Principal:
        raw = _claim(claims, self.roles_claim)
        values = [raw] if isinstance(raw, str) else list(raw or [])
        roles = {self.role_map.get(str(v), str(v)) for v in values}
        roles &= set(ROLES)
        if not roles:
            raise TokenError("no_roles", f"claim {self.roles_claim!r} grants no Arrears role")
        name = _claim(claims, self.name_claim) or claims.get("preferred_username") or claims["sub"]
        team = claims.get("team") if isinstance(claims.get("team"), str) else None
        return Principal(
            name=str(name), roles=frozenset(roles), kind="token", subject=str(claims["sub"]), team=team
        )
