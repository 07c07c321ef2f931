"""Authentication of Gmail push deliveries: the OIDC ID token Pub/Sub signs for an authenticated push
subscription (https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions).

Pub/Sub sends ``Authorization: Bearer <JWT>``, RS256-signed by Google. It is verified with google-auth
(`google.oauth2.id_token.verify_token`: signature against the certificates at
`ARREARS_RESPONSES_GMAIL_PUSH_CERTS_URL`, ``exp``/``iat``, ``aud`` = `ARREARS_RESPONSES_GMAIL_PUSH_AUDIENCE`),
then ``iss`` must be Google's, ``email`` the configured service account and ``email_verified`` true.
Certificates are cached `ARREARS_RESPONSES_GMAIL_PUSH_CERTS_CACHE_S` seconds (google-auth fetches them on
every call otherwise). Every input, however malformed, ends in a verified token or a `PushRejected`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import google.auth.transport.requests
from google.auth import exceptions as google_exceptions
from google.auth import transport
from google.oauth2 import id_token

GOOGLE_ISSUERS = frozenset({"https://accounts.google.com", "accounts.google.com"})
MAX_TOKEN_CHARS = 8192
CLOCK_SKEW_S = 10


class PushRejected(Exception):
    """The push is not authenticated. `status` is 401 (no or invalid token), 403 (a valid Google token of
    another service account) or 503 (the certificates could not be fetched: Pub/Sub retries)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def bearer_token(authorization: str | None) -> str:
    """The token of ``Authorization: Bearer <token>``; `PushRejected` (401) for anything else."""
    if not authorization:
        raise PushRejected(401, "missing bearer token")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise PushRejected(401, "not a bearer token")
    if len(token) > MAX_TOKEN_CHARS or not token.isascii() or token.count(".") != 2:
        raise PushRejected(401, "malformed bearer token")
    return token


class _CachedRequest(transport.Request):
    """A google-auth transport that keeps successful GET answers for `ttl_s` (the certificates)."""

    def __init__(self, ttl_s: float, timeout_s: float = 10.0) -> None:
        self._inner = google.auth.transport.requests.Request()
        self._ttl_s, self._timeout_s = ttl_s, timeout_s
        self._cache: dict[str, tuple[float, transport.Response]] = {}
        self._lock = threading.Lock()

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> transport.Response:
        with self._lock:
            hit = self._cache.get(url) if method == "GET" else None
            if hit is not None and time.monotonic() - hit[0] < self._ttl_s:
                return hit[1]
            response = self._inner(url, method, body, headers, timeout or self._timeout_s, **kwargs)
            if method == "GET" and response.status == 200:
                self._cache[url] = (time.monotonic(), response)
            return response


class PushVerifier:
    """Checks push tokens for one audience and service account (blocking: call it in a thread)."""

    def __init__(self, audience: str, service_account: str, certs_url: str, certs_cache_s: float) -> None:
        self.audience, self.service_account, self.certs_url = audience, service_account, certs_url
        self._request = _CachedRequest(certs_cache_s)

    def verify(self, authorization: str | None) -> Mapping[str, Any]:
        token = bearer_token(authorization)
        try:
            claims = id_token.verify_token(
                token,
                self._request,
                audience=self.audience,
                certs_url=self.certs_url,
                clock_skew_in_seconds=CLOCK_SKEW_S,
            )
        except google_exceptions.TransportError as e:
            raise PushRejected(503, f"push certificates unavailable: {type(e).__name__}") from None
        except Exception as e:  # google-auth and PyJWT raise ValueError, their own errors, binascii/JSON ones
            raise PushRejected(401, f"invalid push token: {type(e).__name__}") from None
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise PushRejected(401, "push token not issued by Google")
        if not isinstance(claims.get("exp"), int | float):
            raise PushRejected(401, "push token without expiry")
        if claims.get("email_verified") is not True:
            raise PushRejected(403, "push token email not verified")
        email = claims.get("email")
        if not isinstance(email, str) or email.lower() != self.service_account.lower():
            raise PushRejected(403, "push token of another service account")
        return claims
