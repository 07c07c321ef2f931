"""Signing in with the identity provider: the authorization-code flow with PKCE against the local issuer,
over HTTP, with the pending attempts in the real `iam` schema."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from arrears_emulators.oidc.app import IssuerState, User
from arrears_shared.auth.oidc import OidcVerifier
from arrears_shared.auth.oidc_login import OidcLogin, SignInError, challenge_of
from sqlalchemy.ext.asyncio import AsyncEngine

CLIENT = "arrears-console"
CALLBACK = "https://console.example.test/auth/callback"


@pytest.fixture
def flow(issuer: tuple[str, IssuerState]) -> OidcLogin:
    url, state = issuer
    state.clients[CLIENT] = [CALLBACK]
    state.users["ana"] = User(
        "s3cret-pass", {"sub": "u-ana", "email": "ana@example.com", "roles": ["collector"]}
    )
    state.users["nobody"] = User("pw-nobody-1", {"sub": "u-x", "email": "x@example.com", "roles": ["guest"]})
    return OidcLogin(OidcVerifier(issuer=url, audience=CLIENT), CLIENT)


async def authorize(url: str, user: str, password: str) -> tuple[str, str]:
    """What the browser does at the provider: open the form, sign in, follow the redirect back."""
    async with httpx.AsyncClient() as http:
        form_page = await http.get(url)
        assert form_page.status_code == 200 and "Password" in form_page.text
        q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        answer = await http.post(
            url.split("?")[0],
            data={k: q.get(k, "") for k in ("client_id", "redirect_uri", "state", "code_challenge", "nonce")}
            | {"username": user, "password": password},
        )
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK
    params = {k: v[0] for k, v in parse_qs(back.query).items()}
    return params["code"], params["state"]


async def test_sign_in_with_pkce_gives_the_person_and_roles(flow: OidcLogin, iam_engine: AsyncEngine) -> None:
    async with iam_engine.begin() as conn:
        url = await flow.begin(conn, CALLBACK)
    q = parse_qs(urlsplit(url).query)
    assert (
        q["code_challenge_method"] == ["S256"]
        and q["response_type"] == ["code"]
        and "openid" in q["scope"][0]
    )
    code, state = await authorize(url, "ana", "s3cret-pass")
    async with iam_engine.begin() as conn:
        who = await flow.finish(conn, code, state, CALLBACK)
    assert (who.name, who.roles, who.subject) == ("ana@example.com", frozenset({"collector"}), "u-ana")
    async with iam_engine.begin() as conn:  # the attempt is used up: a replayed callback fails
        with pytest.raises(SignInError, match="expired or was already used"):
            await flow.finish(conn, code, state, CALLBACK)


async def test_forged_state_wrong_password_and_roleless_accounts_fail(
    flow: OidcLogin, iam_engine: AsyncEngine
) -> None:
    async with iam_engine.begin() as conn:
        url = await flow.begin(conn, CALLBACK)
    code, _ = await authorize(url, "ana", "s3cret-pass")
    async with iam_engine.begin() as conn:
        with pytest.raises(SignInError, match="expired or was already used"):
            await flow.finish(conn, code, "forged-state", CALLBACK)
    async with httpx.AsyncClient() as http:
        q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        wrong = await http.post(
            url.split("?")[0],
            data={k: q[k] for k in ("client_id", "redirect_uri", "state", "code_challenge", "nonce")}
            | {"username": "ana", "password": "guess"},
        )
    assert wrong.status_code == 401
    async with iam_engine.begin() as conn:
        url = await flow.begin(conn, CALLBACK)
    code, state = await authorize(url, "nobody", "pw-nobody-1")
    async with iam_engine.begin() as conn:
        with pytest.raises(SignInError, match="no Arrears role"):
            await flow.finish(conn, code, state, CALLBACK)


async def test_the_provider_refuses_a_code_without_the_right_verifier(
    issuer: tuple[str, IssuerState], flow: OidcLogin
) -> None:
    url, state = issuer
    # a code stolen from the redirect is useless without the verifier that only our server knows
    async with httpx.AsyncClient() as http:
        page = await http.post(
            f"{url}/authorize",
            data={
                "client_id": CLIENT,
                "redirect_uri": CALLBACK,
                "state": "s",
                "code_challenge": challenge_of("the-real-verifier-" + "x" * 40),
                "nonce": "n",
                "username": "ana",
                "password": "s3cret-pass",
            },
        )
        code = parse_qs(urlsplit(page.headers["location"]).query)["code"][0]
        token = await http.post(
            f"{url}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": CALLBACK,
                "client_id": CLIENT,
                "code_verifier": "an-attackers-guess-" + "y" * 40,
            },
        )
    assert token.status_code == 400 and token.json()["error"] == "invalid_grant"
