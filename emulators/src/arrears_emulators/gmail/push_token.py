"""The OIDC ID token a Pub/Sub push subscription puts in `Authorization: Bearer <JWT>`, and the certificates
that verify it — what Google does for an authenticated push (https://cloud.google.com/pubsub/docs/authenticate-push-subscriptions).

Google signs with RS256 keys it publishes at https://www.googleapis.com/oauth2/v1/certs as
``{"<kid>": "<PEM X.509 certificate>"}``; the claims are ``iss`` ``https://accounts.google.com``, ``aud`` (the
subscription's audience, by default its push endpoint), ``email`` (the subscription's service account),
``email_verified``, ``sub``, ``azp``, ``iat`` and ``exp`` (one hour). `PushSigner` does the same with a key it
generates, and serves its certificate in that format, so the verifying code path is the production one.
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

GOOGLE_ISSUER = "https://accounts.google.com"
CERTS_PATH = "/oauth2/v1/certs"


def self_signed_pem(key: rsa.RSAPrivateKey, common_name: str) -> str:
    """A self-signed X.509 certificate of `key`'s public half, PEM (the format of Google's v1 certs)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=14))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@dataclass
class PushSigner:
    """One RS256 key (made at start) that signs push tokens; `certs()` is what the certs URL answers."""

    service_account: str = "gmail-push@arrears-emulator.iam.gserviceaccount.com"
    issuer: str = GOOGLE_ISSUER
    kid: str = field(default_factory=lambda: secrets.token_hex(20))
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def __post_init__(self) -> None:
        self._pem = self_signed_pem(self.key, "arrears-emulator push signer")

    def certs(self) -> dict[str, str]:
        return {self.kid: self._pem}

    def token(self, audience: str, *, lifetime_s: int = 3600, **overrides: Any) -> str:
        """A push token for `audience`; `overrides` replace (or, as None, drop) claims — for tests."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": audience,
            "azp": "1" + secrets.token_hex(10),
            "sub": "1" + str(secrets.randbelow(10**20)),
            "email": self.service_account,
            "email_verified": True,
            "iat": now,
            "exp": now + lifetime_s,
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})
