"""API keys and OIDC bearer tokens, verified against the real `iam` schema and a local issuer over HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
from arrears_emulators.oidc.app import IssuerState, SigningKey, new_rsa_key, sign
from arrears_shared.auth import keys
from arrears_shared.auth.oidc import OidcVerifier, TokenError, parse_role_map
from arrears_shared.auth.throttle import FailureThrottle
from cryptography.hazmat.primitives import serialization
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

AUD = "arrears"


def claims(iss: str, **extra: object) -> dict[str, object]:
    return {
        "iss": iss,
        "aud": AUD,
        "sub": "u-1",
        "email": "maria@example.com",
        "roles": ["collector"],
    } | extra


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256(body: dict[str, object], secret: bytes, kid: str) -> str:
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = _b64(json.dumps(body).encode())
    mac = hmac.new(secret, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    return f"{head}.{payload}.{_b64(mac)}"


# -- API keys -------------------------------------------------------------------------------------------------


async def test_key_is_shown_once_stored_as_hash_and_authenticates(iam_engine: AsyncEngine) -> None:
    async with iam_engine.begin() as conn:
        info, plaintext = await keys.create(conn, name="ops-bot", roles=("service",), created_by="test")
    assert plaintext.startswith(f"ark_{info.key_id}_") and len(plaintext) == 4 + 12 + 1 + 43
    async with iam_engine.connect() as conn:
        stored = (
            await conn.execute(
                text("SELECT key_hash FROM iam.api_keys WHERE key_id = :k"), {"k": info.key_id}
            )
        ).scalar_one()
        assert plaintext not in stored and stored == keys.digest(plaintext)
        principal = await keys.authenticate(conn, plaintext)
    assert principal is not None
    assert (principal.name, principal.roles, principal.kind) == ("ops-bot", frozenset({"service"}), "api_key")
    assert principal.can("ingest.run") and not principal.can("accounts.read")


async def test_wrong_secret_unknown_id_malformed_revoked_and_expired_keys_fail(
    iam_engine: AsyncEngine,
) -> None:
    now = datetime.now(UTC)
    async with iam_engine.begin() as conn:
        good, key = await keys.create(conn, name="k-good", roles=("viewer",), created_by="t")
        _, soon = await keys.create(
            conn, name="k-exp", roles=("viewer",), created_by="t", expires_at=now + timedelta(seconds=1)
        )
        rev, revoked = await keys.create(conn, name="k-rev", roles=("viewer",), created_by="t")
        assert await keys.revoke(conn, rev.key_id)
    wrong_secret = key[:-3] + ("aaa" if not key.endswith("aaa") else "bbb")
    unknown_id = "ark_000000000000_" + key.rsplit("_", 1)[1]
    async with iam_engine.connect() as conn:
        for bad in (wrong_secret, unknown_id, "ark_nope", "not-a-key", revoked, key + "x"):
            assert await keys.authenticate(conn, bad) is None, bad
        assert await keys.authenticate(conn, soon) is not None
        assert await keys.authenticate(conn, soon, now=now + timedelta(seconds=2)) is None
        assert await keys.authenticate(conn, key) is not None


async def test_last_used_is_recorded_at_most_once_a_minute(iam_engine: AsyncEngine) -> None:
    async with iam_engine.begin() as conn:
        info, key = await keys.create(conn, name="k-used", roles=("viewer",), created_by="t")
    t0 = datetime.now(UTC)
    async with iam_engine.connect() as conn:
        await keys.authenticate(conn, key, now=t0)
        await keys.authenticate(conn, key, now=t0 + timedelta(seconds=30))
        first = await keys.get(conn, info.key_id)
        await keys.authenticate(conn, key, now=t0 + timedelta(seconds=61))
        later = await keys.get(conn, info.key_id)
    assert first is not None and later is not None
    assert first.last_used_at == t0 and later.last_used_at == t0 + timedelta(seconds=61)


async def test_rotation_with_grace_keeps_the_old_key_until_the_grace_ends(iam_engine: AsyncEngine) -> None:
    now = datetime.now(UTC)
    async with iam_engine.begin() as conn:
        old, old_key = await keys.create(conn, name="k-rot", roles=("supervisor",), created_by="t")
        rotated = await keys.rotate(conn, old.key_id, rotated_by="t", grace=timedelta(minutes=5), now=now)
    assert rotated is not None
    new, new_key = rotated
    assert new.name == "k-rot" and new.roles == ("supervisor",) and new.key_id != old.key_id
    async with iam_engine.connect() as conn:
        during = await keys.authenticate(conn, old_key, now=now + timedelta(minutes=1))
        after = await keys.authenticate(conn, old_key, now=now + timedelta(minutes=6))
        fresh = await keys.authenticate(conn, new_key, now=now + timedelta(minutes=6))
        active = [k.name for k in await keys.list_keys(conn)]
    assert during is not None and during.name == "k-rot"  # the audit name stays the key's name
    assert after is None and fresh is not None
    async with iam_engine.begin() as conn:  # immediate rotation: the old key dies at once
        again = await keys.rotate(conn, new.key_id, rotated_by="t")
    assert again is not None
    async with iam_engine.connect() as conn:
        assert await keys.authenticate(conn, new_key) is None
    assert active.count("k-rot") == 1


async def test_names_are_unique_among_active_keys_and_roles_are_checked(iam_engine: AsyncEngine) -> None:
    async with iam_engine.begin() as conn:
        await keys.create(conn, name="k-dup", roles=("viewer",), created_by="t")
    with pytest.raises(Exception, match="unique|duplicate"):
        async with iam_engine.begin() as conn:
            await keys.create(conn, name="k-dup", roles=("viewer",), created_by="t")
    for roles in ((), ("root",)):
        with pytest.raises(ValueError, match="roles"):
            async with iam_engine.begin() as conn:
                await keys.create(conn, name="k-bad-role", roles=roles, created_by="t")


async def test_issue_first_admin_never_reuses_a_key(iam_engine: AsyncEngine) -> None:
    async with iam_engine.begin() as conn:
        _, first = await keys.issue_first_admin(conn, name="stack-admin")
    async with iam_engine.begin() as conn:
        _, second = await keys.issue_first_admin(conn, name="stack-admin")
    async with iam_engine.connect() as conn:
        assert first != second
        assert await keys.authenticate(conn, first) is None
        p = await keys.authenticate(conn, second)
    assert p is not None and p.roles == frozenset({"admin"})


# -- OIDC bearer tokens ---------------------------------------------------------------------------------------


async def test_token_from_the_issuer_gives_a_principal_with_roles(
    issuer: tuple[str, IssuerState], signing_key: SigningKey
) -> None:
    url, _ = issuer
    v = OidcVerifier(issuer=url, audience=AUD)  # JWKS found through discovery
    p = await v.verify(sign(signing_key, claims(url, roles=["supervisor", "unknown-role"])))
    assert (p.name, p.roles, p.kind, p.subject) == (
        "maria@example.com",
        frozenset({"supervisor"}),
        "token",
        "u-1",
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [  # times relative to the moment the test runs (seconds), not to collection time
        ({"exp": -120, "iat": -600}, "expired"),
        ({"aud": "someone-else"}, "audience"),
        ({"iss": "https://evil.example"}, "issuer"),
        ({"roles": ["nothing-of-ours"]}, "no_roles"),
        ({"nbf": 600}, "invalid"),
    ],
)
async def test_bad_tokens_are_refused_with_their_reason(
    issuer: tuple[str, IssuerState], signing_key: SigningKey, change: dict[str, object], reason: str
) -> None:
    url, _ = issuer
    v = OidcVerifier(issuer=url, audience=AUD)
    now = int(time.time())
    change = {k: now + v if k in ("exp", "iat", "nbf") else v for k, v in change.items()}  # type: ignore[operator]
    with pytest.raises(TokenError) as e:
        await v.verify(sign(signing_key, claims(url) | change))
    assert e.value.reason == reason


async def test_forged_tokens_are_refused(issuer: tuple[str, IssuerState], signing_key: SigningKey) -> None:
    url, _ = issuer
    v = OidcVerifier(issuer=url, audience=AUD)
    body = claims(url, exp=int(time.time()) + 300, iat=int(time.time()))
    stranger = new_rsa_key("test-key-1")  # same kid, a key the issuer never published
    with pytest.raises(TokenError):
        await v.verify(sign(stranger, body))
    unsigned = jwt.encode(body, None, algorithm="none", headers={"kid": "test-key-1"})
    with pytest.raises(TokenError, match="algorithm"):
        await v.verify(unsigned)
    # the classic confusion attack: HS256 with the issuer's *public* key as the shared secret
    pem = signing_key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    confused = _hs256(body, pem, kid="test-key-1")  # PyJWT itself refuses to make one: built by hand
    with pytest.raises(TokenError, match="algorithm"):
        await v.verify(confused)


async def test_key_rotation_at_the_issuer_refetches_the_jwks_once(issuer: tuple[str, IssuerState]) -> None:
    url, state = issuer
    v = OidcVerifier(issuer=url, audience=AUD, refresh_min_s=0.0)
    await v.verify(sign(state.keys[0], claims(url)))
    rotated = new_rsa_key("test-key-2")
    state.keys.append(rotated)
    before = state.jwks_requests
    p = await v.verify(sign(rotated, claims(url)))
    assert p.roles == frozenset({"collector"}) and state.jwks_requests == before + 1
    # an unknown kid does not turn into a request per token: refetches are rate-limited
    slow = OidcVerifier(issuer=url, audience=AUD, refresh_min_s=60.0)
    await slow.verify(sign(rotated, claims(url)))
    count = state.jwks_requests
    ghost = new_rsa_key("ghost")
    for _ in range(5):
        with pytest.raises(TokenError, match="unknown_key"):
            await slow.verify(sign(ghost, claims(url)))
    assert state.jwks_requests == count


async def test_roles_from_a_nested_claim_through_a_role_map(
    issuer: tuple[str, IssuerState], signing_key: SigningKey
) -> None:
    url, _ = issuer
    v = OidcVerifier(
        issuer=url,
        audience=AUD,
        roles_claim="realm_access.roles",
        role_map=parse_role_map("collections-leads=supervisor, finance-ro=viewer"),
        name_claim="preferred_username",
    )
    token = sign(
        signing_key,
        claims(url, roles=None, preferred_username="mlopez", realm_access={"roles": ["finance-ro", "x"]}),
    )
    p = await v.verify(token)
    assert p.roles == frozenset({"viewer"}) and p.name == "mlopez" and not p.sees_pii
    with pytest.raises(ValueError):
        parse_role_map("leads=root")


async def test_issuer_down_at_first_use_is_a_clean_refusal() -> None:
    v = OidcVerifier(issuer="http://127.0.0.1:9", audience=AUD, http_timeout_s=0.5)
    key = new_rsa_key("k")
    with pytest.raises(TokenError) as e:
        await v.verify(sign(key, claims("http://127.0.0.1:9")))
    assert e.value.reason == "jwks_unavailable"


async def test_discovery_must_name_the_configured_issuer(issuer: tuple[str, IssuerState]) -> None:
    url, state = issuer
    state.issuer = "https://impostor.example"
    try:
        v = OidcVerifier(issuer=url, audience=AUD)
        with pytest.raises(TokenError):
            await v.verify(sign(state.keys[0], claims(url)))
    finally:
        state.issuer = None
    async with httpx.AsyncClient() as c:
        assert (await c.get(f"{url}/.well-known/openid-configuration")).json()["issuer"] == url


# -- throttle ---------------------------------------------------------------------------------------------------


def test_failures_slow_down_then_block_then_expire() -> None:
    t = FailureThrottle(window_s=60, slowdown_after=3, block_after=6)
    delays = [t.record_failure("1.2.3.4", now=100 + i) for i in range(6)]
    assert delays[:3] == [0, 0, 0] and 0 < delays[3] < delays[4] < delays[5] <= 4.0
    assert t.blocked_for("1.2.3.4", now=106) > 0
    assert t.blocked_for("5.6.7.8", now=106) == 0  # per client
    assert t.blocked_for("1.2.3.4", now=100 + 61) == 0  # the oldest failure left the window


def test_throttle_memory_is_bounded() -> None:
    t = FailureThrottle(max_clients=100)
    for i in range(1000):
        t.record_failure(f"10.0.{i // 256}.{i % 256}", now=1.0)
    assert len(t._failures) <= 100
