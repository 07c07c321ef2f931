"""The whole platform as processes (`arrears up`'s Platform), scanned route by route from each service's own
OpenAPI document: every route answers 401 without a credential unless it is one of the few public ones,
401 with a wrong key or an expired token, 403 to each role without the route's permission, and serves each
role that has it. A state-changing call that succeeds is in that service's audit log, attributed to the
caller. Also: console sign-in (cookie, CSRF, sign-out) and the keys API end to end."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from arrears_cli.__main__ import app as cli
from arrears_cli.stack.platform import Platform
from arrears_cli.stack.postgres import EmbeddedPostgres
from arrears_emulators.common import EmulatorServer
from arrears_emulators.oidc.app import IssuerState, SigningKey, create_app, new_rsa_key, sign
from arrears_shared import topology
from arrears_shared.auth.roles import ROLES
from auth_support import bearer
from e2e.support import running_platform
from typer.testing import CliRunner

pytestmark = pytest.mark.e2e

# The only routes anyone may call. A new public route fails this test until a reviewer adds it here.
PUBLIC_OK = re.compile(
    r"^(GET /healthz|GET /readyz|GET /metrics|GET /login|POST /login|POST /webhooks/quo|GET /webhooks/whatsapp|POST /webhooks/whatsapp|POST /webhooks/gmail/push"
    r"|POST /ingest/payments/stripe|POST /ingest/payments/webhook|GET /static/\{name\}"
    r"|GET /auth/login|GET /auth/callback)$"
)


@pytest.fixture(scope="module")
def idp() -> Iterator[tuple[str, SigningKey]]:
    key = new_rsa_key("platform-key")
    with EmulatorServer(create_app(IssuerState(keys=[key]))) as server:
        yield server.url, key


@pytest.fixture(scope="module")
def platform(
    pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory, idp: tuple[str, SigningKey]
) -> Iterator[Platform]:
    url, _ = idp
    oidc = {
        "ARREARS_AUTH_OIDC_ISSUER": url,
        "ARREARS_AUTH_OIDC_AUDIENCE": "arrears",
        # the scan presents hundreds of bad credentials from one address on purpose (throttling: test_gate)
        "ARREARS_AUTH_FAILURE_SLOWDOWN_AFTER": "1000000",
        "ARREARS_AUTH_FAILURE_BLOCK_AFTER": "1000000",
    }
    with running_platform(pg, tmp_path_factory, "security", every_service=oidc) as p:
        yield p


def token(idp: tuple[str, SigningKey], role: str, **extra: Any) -> str:
    url, key = idp
    claims = {
        "iss": url,
        "aud": "arrears",
        "sub": f"sub-{role}",
        "email": f"{role}@example.com",
        "roles": [role],
    }
    return sign(key, claims | extra)


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: "1" if m.group(1) == "step" else f"scan-{m.group(1)}", path)


def audit_head(http: httpx.Client, base: str, admin: dict[str, str]) -> int | None:
    """Newest audit entry's seq of the service at `base` (0: empty log; None: it keeps no audit log)."""
    r = http.get(f"{base}/audit", params={"limit": 1}, headers=admin)
    if r.status_code == 404:
        return None
    rows = r.json()
    return rows[0]["seq"] if rows else 0


def test_every_route_of_every_service_by_every_kind_of_caller(
    platform: Platform, idp: tuple[str, SigningKey]
) -> None:
    p = platform
    expired = token(idp, "admin", iat=int(time.time()) - 3600, exp=int(time.time()) - 600)
    role_tokens = {role: token(idp, role) for role in ROLES}
    admin = bearer(p.admin_api_key)
    audited_changes = 0
    matrix: dict[str, dict[str, int]] = {}
    scanned = 0
    with httpx.Client(timeout=30) as http:
        for svc in topology.services():
            base = p.service_url(svc)
            assert http.get(f"{base}/openapi.json").status_code == 401
            assert http.get(f"{base}/docs").status_code == 401
            doc = http.get(f"{base}/openapi.json", headers=bearer(p.admin_api_key)).json()
            for path, ops in doc["paths"].items():
                for method, op in ops.items():
                    label = f"{method.upper()} {path}"
                    url = base + concrete(path)
                    anonymous = http.request(method, url, json={})
                    if op["x-arrears-permission"] is None:
                        assert PUBLIC_OK.match(label), (
                            f"{svc}: {label} is public but not on the reviewed list"
                        )
                        assert op["security"] == []
                        continue
                    scanned += 1
                    assert anonymous.status_code == 401, (svc, label, anonymous.status_code)
                    for bad in (bearer("ark_000000000000_" + "q" * 43), bearer(expired), bearer("nonsense")):
                        assert http.request(method, url, json={}, headers=bad).status_code == 401, (
                            svc,
                            label,
                        )
                    row = matrix.setdefault(f"{svc} {label}", {})
                    for role in ROLES:
                        seq = audit_head(http, base, admin) if method != "get" else None
                        r = http.request(method, url, json={}, headers=bearer(role_tokens[role]))
                        row[role] = r.status_code
                        if seq is not None and r.status_code < 300:  # a change went through: who did it?
                            entry = http.get(f"{base}/audit", params={"limit": 1}, headers=admin).json()[0]
                            assert entry["seq"] > seq and entry["actor"] == f"{role}@example.com", (
                                svc,
                                label,
                            )
                            audited_changes += 1
                        if role in op["x-arrears-roles"]:
                            assert r.status_code not in (401, 403), (svc, label, role, r.text[:300])
                            assert r.status_code < 500, (svc, label, role, r.status_code, r.text[:300])
                        else:
                            assert r.status_code == 403, (svc, label, role, r.status_code, r.text[:300])
    assert scanned >= 60, scanned  # every service's API was really scanned
    assert audited_changes >= 1


def test_a_successful_change_is_audited_as_the_caller(
    platform: Platform, idp: tuple[str, SigningKey]
) -> None:
    p = platform
    sup = token(idp, "supervisor", email="lead@example.com")
    policy = httpx.get(
        f"{p.service_url('segmenter')}/policies/active", headers=bearer(sup), timeout=30
    ).json()
    import yaml

    body = yaml.safe_dump(policy | {"version": policy["version"] + 1, "description": "raised by the scan"})
    r = httpx.post(
        f"{p.service_url('segmenter')}/policies?actor=someone-else",
        content=body,
        headers=bearer(sup) | {"content-type": "application/yaml", "x-request-id": "scan-req-1"},
        timeout=60,
    )
    assert r.status_code == 201, r.text
    assert r.headers["x-request-id"] == "scan-req-1"
    history = httpx.get(f"{p.service_url('segmenter')}/policies", headers=bearer(sup), timeout=30).json()
    assert history[0]["loaded_by"] == "lead@example.com"  # never the `actor` the caller wrote in the URL
    rows = httpx.get(f"{p.service_url('segmenter')}/audit", headers=bearer(sup), timeout=30).json()
    entry = next(e for e in rows if e["action"] == "policy.load")
    assert (entry["actor"], entry["role"], entry["request_id"]) == (
        "lead@example.com",
        "supervisor",
        "scan-req-1",
    )
    assert entry["after"]["version"] == policy["version"] + 1
    verified = CliRunner().invoke(cli, ["audit", "verify", "--database-url", p.database_url])
    assert verified.exit_code == 0, verified.output
    assert "segmenter: entries" in verified.output and "audit logs OK" in verified.output


def test_console_sign_in_session_csrf_and_sign_out(platform: Platform) -> None:
    base = platform.service_url("console")
    with httpx.Client(base_url=base, timeout=30) as browser:
        first = browser.get("/", headers={"accept": "text/html"})
        assert first.status_code == 303 and first.headers["location"] == "/login"
        assert "Sign in" in browser.get("/login").text
        wrong = browser.post("/login", data={"api_key": "ark_000000000000_" + "w" * 43})
        assert wrong.status_code == 401 and "not valid" in wrong.text and not browser.cookies
        signed = browser.post("/login", data={"api_key": platform.admin_api_key})
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie
        page = browser.get("/")
        assert (
            page.status_code == 200 and "<small>(admin)</small>" in page.text and "Dead letters" in page.text
        )
        csrf = re.search(r"csrf_token=([^\"&]+)", page.text)
        assert csrf
        assert browser.post("/logout").status_code == 403  # no CSRF token: a cross-site post cannot sign out
        out = browser.post(f"/logout?csrf_token={csrf.group(1)}")
        assert out.status_code == 303 and out.headers["location"] == "/login"
        old = signed.cookies.get("arrears_session")
    assert httpx.get(f"{base}/api/me", cookies={"arrears_session": old or ""}, timeout=30).status_code == 401


def test_keys_api_create_use_rotate_revoke(platform: Platform) -> None:
    console = platform.service_url("console")
    admin = bearer(platform.admin_api_key)
    made = httpx.post(
        f"{console}/admin/api-keys",
        json={"name": "scheduler", "roles": ["service"]},
        headers=admin,
        timeout=30,
    )
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    listed = httpx.get(f"{console}/admin/api-keys", headers=admin, timeout=30).json()
    assert key not in str(listed) and any(k["name"] == "scheduler" for k in listed)
    ingest = platform.service_url("ingest")
    assert httpx.get(f"{ingest}/ingest/runs", headers=bearer(key), timeout=30).status_code == 403  # service
    assert (
        httpx.get(f"{platform.service_url('console')}/api/aging", headers=bearer(key), timeout=30).status_code
        == 200
    )
    rotated = httpx.post(
        f"{console}/admin/api-keys/{made.json()['key_id']}/rotate", headers=admin, timeout=30
    )
    assert rotated.status_code == 201
    new_key = rotated.json()["key"]
    assert httpx.get(f"{console}/api/aging", headers=bearer(key), timeout=30).status_code == 401
    assert httpx.get(f"{console}/api/aging", headers=bearer(new_key), timeout=30).status_code == 200
    gone = httpx.delete(f"{console}/admin/api-keys/{rotated.json()['key_id']}", headers=admin, timeout=30)
    assert gone.status_code == 204
    assert httpx.get(f"{console}/api/aging", headers=bearer(new_key), timeout=30).status_code == 401
    actions = [e["action"] for e in httpx.get(f"{console}/audit", headers=admin, timeout=30).json()]
    assert {"api_key.create", "api_key.rotate", "api_key.revoke"} <= set(actions)
