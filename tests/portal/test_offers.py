"""Settlement offers end to end on a real broker and Postgres (issue #19): a supervisor makes one through
escalation's API (collectors and viewers cannot; more than the balance, a past day, an unknown account or a
second open offer are refused), it reaches the portal as `arrears.settlement.offer.v1` on `overrides`, the
verified debtor sees it and accepts it (once: accepting again changes nothing), the acceptance is the
platform's own event (a `record_promise` for the offer's amount by its day, naming the offer) and audited,
escalation marks the offer accepted, says so on the collector's timeline and tracks the promise, and the
debtor pays the offer's amount through the checkout. Withdrawn and expired offers are not shown and cannot
be accepted."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from arrears_emulators.checkout.app import CheckoutConfig, create_app
from arrears_emulators.common import EmulatorServer
from arrears_escalation.__main__ import definition as escalation_definition
from arrears_escalation.deps import Deps
from arrears_escalation.settings import EscalationSettings
from arrears_portal.__main__ import definition as portal_definition
from arrears_shared import topics
from arrears_shared.audit.chain import verify as verify_chain
from arrears_shared.cloudevents import encode
from arrears_shared.events import Event, OverrideRequested, SettlementOfferChanged
from arrears_shared.service import ServiceHost
from auth_support import bearer, issue_key_async
from portal_support import portal_settings
from sqlalchemy import text

from .test_portal import KEY, account, csrf_of, events_of, sign_in, token

SECRET = "sk_test_offers"
ROLES = ("viewer", "collector", "supervisor", "admin")


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with EmulatorServer(create_app(CheckoutConfig(secret_key=SECRET))) as s:
        yield s.url


@pytest.fixture(scope="module")
async def platform(
    broker: Any, fresh_database_url: Callable[..., str], gateway: str
) -> AsyncIterator[dict[str, Any]]:
    """The portal and escalation as they run (their own hosts, schemas and consumer groups) on one broker,
    and an API key per role on escalation."""
    portal = ServiceHost(
        portal_definition(
            portal_settings(
                broker,
                fresh_database_url("portal_offers"),
                KEY,
                portal_checkout_base_url=gateway,
                portal_checkout_secret_key=SECRET,
            )
        )
    )
    settings = EscalationSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=fresh_database_url("escalation_offers"),
        runner_poll_timeout_ms=100,
        outbox_poll_s=0.02,
        escalation_tick_s=3600,
    )
    deps = Deps.from_settings(settings)
    escalation = ServiceHost(escalation_definition(settings, deps))
    portal_app, escalation_app = portal.build_app(), escalation.build_app()
    await portal.start()
    await escalation.start()
    assert escalation.ctx is not None
    async with escalation.ctx.engine.begin() as conn:
        keys = {role: await issue_key_async(conn, role, name=f"{role}-user") for role in ROLES}
    async with (
        httpx.AsyncClient(transport=httpx.ASGITransport(app=portal_app), base_url="http://portal") as debtor,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=escalation_app), base_url="http://esc") as staff,
    ):
        yield {
            "portal": portal,
            "escalation": escalation,
            "deps": deps,
            "debtor": debtor,
            "staff": staff,
            "keys": {r: bearer(k) for r, k in keys.items()},
        }
    await escalation.stop()
    await portal.stop()


async def publish(bootstrap: str, *events: Event, source: str = "ingest") -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await p.start()
    try:
        for ev in events:
            rec = encode(ev, source=source, id=f"test:{uuid.uuid4()}")
            await p.send_and_wait(rec.topic, rec.value, key=rec.key, headers=rec.headers)
    finally:
        await p.stop()


async def until(probe: Callable[[], Awaitable[Any]], what: str, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = await probe()
        if got:
            return got
        await asyncio.sleep(0.1)
    raise AssertionError(f"never: {what}")


async def scalar(host: ServiceHost, sql: str, **params: Any) -> Any:
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        return (await c.execute(text(sql), params)).scalar()


async def seeded(p: dict[str, Any], broker: Any, balance: int = 10_000) -> str:
    """An account both services learnt from `account-changed`."""
    acc = f"OFF-{uuid.uuid4().hex[:8]}"
    await publish(broker.bootstrap_servers, account(acc, balance=balance))
    q = "SELECT count(*) FROM {} WHERE account_id = :a"
    await until(lambda: scalar(p["portal"], q.format("portal.accounts"), a=acc), "portal learns the account")
    await until(
        lambda: scalar(p["escalation"], q.format("escalation.activity"), a=acc), "escalation learns it"
    )
    return acc


async def offer(p: dict[str, Any], acc: str, role: str = "supervisor", **body: Any) -> httpx.Response:
    days = body.pop("days", 10)
    payload = {"amount_minor": 8_000, "expires_on": (date.today() + timedelta(days=days)).isoformat()}
    return await p["staff"].post(  # type: ignore[no-any-return]
        f"/accounts/{acc}/offers", json=payload | body, headers=p["keys"][role]
    )


async def portal_offer(p: dict[str, Any], offer_id: str, status: str) -> None:
    await until(
        lambda: scalar(
            p["portal"],
            "SELECT 1 FROM portal.settlement_offers WHERE offer_id = :o AND status = :s",
            o=offer_id,
            s=status,
        ),
        f"the portal sees {offer_id} {status}",
    )


async def test_a_supervisor_offers_the_debtor_accepts_once_escalation_tracks_it_and_the_debtor_pays(
    platform: dict[str, Any], broker: Any, gateway: str
) -> None:
    p = platform
    acc = await seeded(p, broker)
    for role in ("viewer", "collector"):  # only supervisors and admins make offers
        assert (await offer(p, acc, role)).status_code == 403
    assert (await offer(p, acc, amount_minor=10_000)).status_code == 422  # not less than the balance
    assert (await offer(p, acc, days=-1)).status_code == 422  # a day already past
    assert (await offer(p, "OFF-NOBODY")).status_code == 422  # an account escalation never saw
    made = await offer(p, acc, note="hardship, one-off")
    assert made.status_code == 201, made.text
    o = made.json()
    assert (o["amount_minor"], o["currency"], o["balance_minor"], o["status"]) == (
        8_000,
        "USD",
        10_000,
        "offered",
    )
    assert (await offer(p, acc, role="admin")).status_code == 409  # one open offer at a time

    await portal_offer(p, o["offer_id"], "offered")
    debtor = p["debtor"]
    page = await sign_in(debtor, token(acc))
    assert f"We can settle your account for $80.00 if you pay by {o['expires_on']}" in page
    assert f'name="offer_id" value="{o["offer_id"]}"' in page
    csrf = csrf_of(page)
    for _ in range(2):  # a double click: accepted once
        r = await debtor.post("/portal/account/offer", data={"csrf": csrf, "offer_id": o["offer_id"]})
        assert r.status_code == 303 and r.headers["location"] == "/portal/account?done=offer"
    page = (await debtor.get("/portal/account?done=offer")).text
    assert "You accepted to settle for $80.00" in page and "Pay $80.00 now" in page
    assert 'name="amount" value="80.00"' in page

    found = await events_of(p["portal"], broker.bootstrap_servers, topics.OVERRIDES, acc, want=2)
    accepted = [e.data for e in found if isinstance(e.data, OverrideRequested)]
    assert len(accepted) == 1
    ev = accepted[0]
    assert (ev.action, ev.promise_amount_minor, ev.promise_date.isoformat() if ev.promise_date else None) == (
        "record_promise", 8_000, o["expires_on"],
    )  # fmt: skip
    assert ev.settlement_offer_id == o["offer_id"] and ev.actor.startswith("portal:debtor:")
    assert [e.data.status for e in found if isinstance(e.data, SettlementOfferChanged)] == ["offered"]
    assert await scalar(
        p["portal"], "SELECT count(*) FROM portal.audit_log WHERE action = 'portal.offer_accept' AND entity_id = :a", a=acc
    ) == 1  # fmt: skip

    # escalation: accepted, on the collector's timeline, and tracked as a promise of the offer's amount
    staff, collector = p["staff"], p["keys"]["collector"]

    async def accepted_there() -> Any:
        got = (await staff.get(f"/accounts/{acc}/offers", headers=collector)).json()
        return got if got[0]["status"] == "accepted" else None

    (view,) = await until(accepted_there, "escalation marks the offer accepted")
    assert view["note"] == "hardship, one-off"  # the supervisor's note, for the team
    timeline = (await staff.get(f"/accounts/{acc}/timeline", headers=collector)).json()
    line = next(i for i in timeline if i["kind"] == "offer.accepted")
    assert line["summary"] == f"settlement offer accepted in the portal: pays 80.00 USD by {o['expires_on']}"
    assert any(i["kind"] == "audit.offer.create" for i in timeline)
    (promise,) = (await staff.get(f"/accounts/{acc}/promises", headers=collector)).json()
    assert (promise["amount_minor"], promise["due_date"], promise["channel"], promise["status"]) == (
        8_000, o["expires_on"], "portal", "pending",
    )  # fmt: skip
    # an accepted offer cannot be withdrawn
    sup = p["keys"]["supervisor"]
    r = await staff.post(f"/accounts/{acc}/offers/{o['offer_id']}/withdraw", json={}, headers=sup)
    assert r.status_code == 409

    # paying the offer's amount goes through the same checkout
    nonce = re.search(r'name="nonce" value="([^"]+)"', page)
    assert nonce
    r = await debtor.post(
        "/portal/account/pay", data={"csrf": csrf, "nonce": nonce.group(1), "amount": "80.00"}
    )
    assert r.status_code == 303 and r.headers["location"].startswith(gateway)
    async with httpx.AsyncClient() as c:
        (session,) = (await c.get(f"{gateway}/_emulator/sessions")).json()
    assert session["amount_total"] == 8_000 and session["client_reference_id"] == acc
    for host in (p["portal"], p["escalation"]):
        assert host.ctx is not None
        async with host.ctx.engine.connect() as c:
            assert (await verify_chain(c, host.ctx.schema)).ok


async def test_withdrawn_and_expired_offers_are_not_shown_and_cannot_be_accepted(
    platform: dict[str, Any], broker: Any
) -> None:
    p = platform
    acc = await seeded(p, broker)
    o = (await offer(p, acc)).json()
    await portal_offer(p, o["offer_id"], "offered")
    sup = p["keys"]["supervisor"]
    collector = p["keys"]["collector"]
    path = f"/accounts/{acc}/offers/{o['offer_id']}/withdraw"
    assert (await p["staff"].post(path, json={}, headers=collector)).status_code == 403
    r = await p["staff"].post(path, json={"reason": "customer disputes"}, headers=sup)
    assert r.status_code == 202
    assert (await p["staff"].post(path, json={}, headers=sup)).status_code == 409  # once
    await portal_offer(p, o["offer_id"], "withdrawn")
    # an offer whose day has passed (published as escalation would have, before it passed)
    expired = SettlementOfferChanged(
        account_id=acc, offer_id=f"so-old-{uuid.uuid4().hex[:6]}", status="offered", amount_minor=7_000,
        currency="USD", balance_minor=10_000, expires_on=date.today() - timedelta(days=2), actor="sup",
        role="supervisor", changed_at=datetime.now(UTC),
    )  # fmt: skip
    await publish(broker.bootstrap_servers, expired, source="escalation")
    await portal_offer(p, expired.offer_id, "offered")

    page = await sign_in(p["debtor"], token(acc))
    assert "settle your account" not in page and "offer_id" not in page
    csrf = csrf_of(page)
    for oid in (o["offer_id"], expired.offer_id, "so-nonexistent"):
        r = await p["debtor"].post("/portal/account/offer", data={"csrf": csrf, "offer_id": oid})
        assert r.status_code == 422 and "no longer available" in r.text, oid
    assert await scalar(p["portal"], "SELECT count(*) FROM portal.actions WHERE account_id = :a", a=acc) == 0
    # a new offer once the old one is withdrawn; the debtor sees only it
    again = await offer(p, acc, amount_minor=9_000)
    assert again.status_code == 201
    await portal_offer(p, again.json()["offer_id"], "offered")
    page = (await p["debtor"].get("/portal/account")).text
    assert page.count("settle your account") == 1 and "$90.00" in page


async def test_another_accounts_offer_cannot_be_accepted(platform: dict[str, Any], broker: Any) -> None:
    p = platform
    mine, theirs = await seeded(p, broker), await seeded(p, broker)
    o = (await offer(p, theirs)).json()
    await portal_offer(p, o["offer_id"], "offered")
    page = await sign_in(p["debtor"], token(mine))
    r = await p["debtor"].post(
        "/portal/account/offer", data={"csrf": csrf_of(page), "offer_id": o["offer_id"]}
    )
    assert r.status_code == 422
    assert await scalar(
        p["portal"], "SELECT status FROM portal.settlement_offers WHERE offer_id = :o", o=o["offer_id"]
    ) == "offered"  # fmt: skip
