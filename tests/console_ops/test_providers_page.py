"""Provider health: both dispatchers (real ServiceHosts on local ports, QUO and Gmail emulators behind them)
answer `GET /delivery/status`, and the console's Providers page shows breaker state, quota used against the
provider's limit, sends in flight and in-doubt sends awaiting reconciliation."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from arrears_console.__main__ import definition as console_definition
from arrears_console.settings import ConsoleSettings
from arrears_dispatcher_email.__main__ import definition as email_definition
from arrears_dispatcher_email.settings import EmailSettings
from arrears_dispatcher_sms.__main__ import definition as sms_definition
from arrears_emulators.common import EmulatorServer
from arrears_emulators.gmail.app import GmailConfig
from arrears_emulators.gmail.app import create_app as create_gmail
from arrears_emulators.quo.app import QuoConfig
from arrears_emulators.quo.app import create_app as create_quo
from arrears_shared.delivery import DeliveryEngine
from arrears_shared.service import ServiceHost
from auth_support import bearer, issue_key_async
from dispatch.helpers import FROM_NUMBER, SENDER, sms_settings
from sqlalchemy import text

from .support import serve


@pytest.fixture(scope="module")
def emulators() -> Iterator[tuple[str, str]]:
    with (
        EmulatorServer(create_quo(QuoConfig(phone_numbers={FROM_NUMBER: "PNarrearsOps1"}))) as quo,
        EmulatorServer(create_gmail(GmailConfig(user_email=SENDER))) as gmail,
    ):
        yield quo.url, gmail.url


def engine_of(host: ServiceHost) -> DeliveryEngine:
    return host.d.loops[0].__self__  # type: ignore[attr-defined,no-any-return]  # the engine's bound loop


@pytest.fixture(scope="module")
async def stack(
    broker: Any, fresh_database_url: Callable[..., str], emulators: tuple[str, str]
) -> AsyncIterator[dict[str, Any]]:
    quo_url, gmail_url = emulators
    db = fresh_database_url("console_providers")
    slow = {
        "dispatch_reconcile_interval_s": 3600.0,
        "dispatch_in_doubt_after_s": 60.0,
    }  # rows stay as inserted
    tag = uuid.uuid4().hex[:6]
    sms = ServiceHost(
        sms_definition(
            sms_settings(quo_url, db, kafka_bootstrap_servers=broker.bootstrap_servers, **slow),
            group=f"dispatcher-sms-ops-{tag}",
        )
    )
    email = ServiceHost(
        email_definition(
            EmailSettings(
                service_name="dispatcher-email",
                database_url=db,
                kafka_bootstrap_servers=broker.bootstrap_servers,
                gmail_api_endpoint=gmail_url,
                gmail_token="emulator-token",
                gmail_sender=SENDER,
                gmail_daily_quota=500,
                **slow,
            ),
            group=f"dispatcher-email-ops-{tag}",
        )
    )
    hosts = [sms, email]
    apps = [h.build_app() for h in hosts]
    for h in hosts:
        await h.start()
    try:
        async with serve(apps[0]) as sms_url, serve(apps[1]) as email_url:
            console = ServiceHost(
                console_definition(
                    ConsoleSettings(
                        kafka_bootstrap_servers=broker.bootstrap_servers,
                        database_url=db,
                        runner_poll_timeout_ms=100,
                        console_dispatcher_urls={"dispatcher-sms": sms_url, "dispatcher-email": email_url},
                    )
                )
            )
            app = console.build_app()
            await console.start()
            assert console.ctx is not None
            async with console.ctx.engine.begin() as conn:
                keys = {r: await issue_key_async(conn, r) for r in ("collector", "supervisor", "service")}
            try:
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://console"
                ) as client:
                    yield {
                        "client": client,
                        "keys": keys,
                        "sms": sms,
                        "email": email,
                        "console": console,
                        "urls": (sms_url, email_url),
                    }
            finally:
                await console.stop()
    finally:
        for h in hosts:
            await h.stop()


async def _insert(host: ServiceHost, schema: str, channel: str, rows: list[tuple[str, float]]) -> None:
    """Deliveries in a given state, `updated_at` `age` ago (payload and address are not read here)."""
    assert host.ctx is not None
    async with host.ctx.engine.begin() as conn:
        for state, age in rows:
            await conn.execute(
                text(
                    f"INSERT INTO {schema}.deliveries (notice_id, account_id, channel, to_address, payload, state,"
                    " next_attempt_at, updated_at) VALUES (:n, 'OPS-1', :c, 'x', CAST(:p AS jsonb), :s,"
                    " now() + interval '1 day', now() - make_interval(secs => :age))"
                ),
                {"n": f"ops-{uuid.uuid4().hex}", "c": channel, "p": json.dumps({}), "s": state, "age": age},
            )


async def test_provider_health_page_and_route(stack: dict[str, Any]) -> None:
    client, keys, sms, email = stack["client"], stack["keys"], stack["sms"], stack["email"]
    # SMS: one send in flight, two in doubt (older than the in-doubt age), one queued for tomorrow
    await _insert(sms, "dispatcher_sms", "sms", [("sending", 1.0), ("sending", 300.0),
                                                  ("sending", 600.0), ("queued", 0.0)])  # fmt: skip
    # email: 37 sends counted in the rolling window of the Gmail mailbox (limit 500)
    eng = engine_of(email)
    assert email.ctx is not None
    async with email.ctx.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO dispatcher_email.quota_window (name, bucket, used) VALUES"
                " (:n, date_trunc('minute', now()) - interval '2 hours', 30), (:n, date_trunc('minute', now()), 7),"
                " (:n, date_trunc('minute', now()) - interval '30 hours', 99)"
            ),
            {"n": eng.channel.limiter_name},
        )
    # the SMS route's circuit opens after its threshold of outage failures
    breaker = engine_of(sms).breakers["primary"]
    for _ in range(breaker.failure_threshold):
        breaker.failure()

    sms_url, email_url = stack["urls"]
    service = bearer(keys["service"])
    async with httpx.AsyncClient(headers=service) as http:
        s = (await http.get(sms_url + "/delivery/status")).json()
        e = (await http.get(email_url + "/delivery/status")).json()
        assert (
            await http.get(sms_url + "/delivery/status", headers=bearer(keys["collector"]))
        ).status_code == 403
    assert s["routes"][0]["provider"] == "quo" and s["routes"][0]["breaker"]["state"] == "open"
    assert s["in_doubt"]["count"] == 2 and s["in_flight"] >= 1 and s["quota"]["limit"] is None
    assert e["quota"] == {"limit": 500, "used": 37} and e["routes"][0]["breaker"]["state"] == "closed"
    assert "to_address" not in json.dumps(s)  # no personal data on this route

    r = await client.get("/ops/providers", headers=bearer(keys["supervisor"]))
    assert r.status_code == 200, r.text
    assert "dispatcher-sms" in r.text and "dispatcher-email" in r.text
    assert ">open</span>" in r.text and ">closed</span>" in r.text
    assert "37 / 500" in r.text and "no daily limit" in r.text
    assert "awaiting reconciliation since" in r.text
    assert 'href="/ops/providers" aria-current="page"' in r.text  # in the navigation

    assert (await client.get("/ops/providers", headers=bearer(keys["collector"]))).status_code == 403
    breaker.success()


async def test_an_unreachable_dispatcher_is_shown_not_fatal(stack: dict[str, Any]) -> None:
    client, keys = stack["client"], stack["keys"]
    # point the console at a port nobody listens on for one dispatcher
    ups = stack["console"].ctx.extra["upstreams"]
    saved = ups.urls["dispatcher-email"]
    ups.urls["dispatcher-email"] = "http://127.0.0.1:9"
    try:
        r = await client.get("/ops/providers", headers=bearer(keys["supervisor"]))
    finally:
        ups.urls["dispatcher-email"] = saved
    assert r.status_code == 200 and "Unavailable: dispatcher-email is unreachable" in r.text
    assert "dispatcher-sms" in r.text
