"""The portal service on a real broker and Postgres: it learns accounts from `account-changed`, a notice's
link opens a verification form that discloses nothing, wrong answers lock the account's links, a right one
opens a visit scoped to that account, and the debtor's promise, dispute and opt-out travel as the overrides
the segmenter applies (in the audit log too); the first open of a link is one `link-clicked`."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from arrears_portal.__main__ import definition
from arrears_shared import topics
from arrears_shared.audit.chain import verify as verify_chain
from arrears_shared.cloudevents import Envelope, encode
from arrears_shared.events import AccountChanged, LinkClicked, OverrideRequested, Tier
from arrears_shared.links import LinkClaims, LinkSigner
from arrears_shared.service import ServiceHost
from portal_support import hosted, portal_settings
from sqlalchemy import text
from vault_support import open_records

KEY = "portal-test-link-key-0123456789abcdefghij"
PHONE_TAIL = "4321"


@pytest.fixture(scope="module")
async def portal(
    broker: Any, fresh_database_url: Callable[..., str]
) -> AsyncIterator[tuple[ServiceHost, Any]]:
    settings = portal_settings(
        broker,
        fresh_database_url("portal"),
        KEY,
        portal_verify_max_attempts=3,
        portal_brand_name="Acme Water",
        portal_contact="+1 555 010 0100",
    )
    async with hosted(definition(settings)) as (host, client, _):
        yield host, client


def account(account_id: str, balance: int = 12_345, name: str = "Maria Lopez") -> AccountChanged:
    return AccountChanged(
        account_id=account_id,
        change="created",
        source="sheet",
        customer_name=name,
        phone=f"+1415555{PHONE_TAIL}",
        email="maria@example.com",
        balance_minor=balance,
        currency="USD",
        due_date=date(2026, 1, 15),
        timezone="America/Los_Angeles",
        sms_consent=True,
        email_consent=True,
        content_hash=uuid.uuid4().hex,
        as_of=datetime.now(UTC),
    )


async def publish(bootstrap: str, ev: AccountChanged) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await p.start()
    try:
        rec = encode(ev, source="ingest", id=f"acc:{ev.account_id}:{ev.content_hash}")
        await p.send_and_wait(rec.topic, rec.value, key=rec.key, headers=rec.headers)
    finally:
        await p.stop()


async def known(host: ServiceHost, account_id: str) -> None:
    assert host.ctx is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        async with host.ctx.engine.connect() as c:
            n = (
                await c.execute(
                    text("SELECT count(*) FROM portal.accounts WHERE account_id = :a"), {"a": account_id}
                )
            ).scalar_one()
        if n:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"portal never learnt {account_id}")


def token(account_id: str, step: int = 1, tier: Tier = Tier.REMINDER, **kw: Any) -> str:
    now = datetime.now(UTC).replace(microsecond=0)
    claims = LinkClaims(
        notice_id=f"{account_id}:default:v1:s{step}:c0:sms",
        account_id=account_id,
        channel="sms",
        tier=tier,
        issued_at=kw.get("issued_at", now),
        expires_at=kw.get("expires_at", now + timedelta(days=30)),
    )
    return LinkSigner(kw.get("key", KEY)).mint(claims)


async def events_of(
    host: ServiceHost, bootstrap: str, topic: str, account_id: str, want: int
) -> list[Envelope]:
    """The records about `account_id` on `topic`, decoded as a consumer does (sealed fields opened)."""
    c = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await c.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            batch = await c.getmany(timeout_ms=300)
            for recs in batch.values():
                for r in recs:
                    h = [(k, v) for k, v in r.headers]
                    if dict(h).get("ce_subject") == account_id.encode():
                        found.append((h, r.value))
            if len(found) >= want:
                await asyncio.sleep(0.5)  # and nothing more arrives
                for recs in (await c.getmany(timeout_ms=300)).values():
                    found += [
                        ([(k, v) for k, v in r.headers], r.value)
                        for r in recs
                        if dict(r.headers).get("ce_subject") == account_id.encode()
                    ]
                break
    finally:
        await c.stop()
    assert host.ctx is not None
    async with host.ctx.engine.connect() as conn:
        return await open_records(conn, found)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


async def sign_in(client: Any, tok: str) -> str:
    r = await client.post(f"/p/{tok}", data={"digits": PHONE_TAIL, "lang": "en"})
    assert r.status_code == 303 and r.headers["location"] == "/portal/account", r.text
    page = await client.get("/portal/account")
    assert page.status_code == 200
    return page.text


async def test_link_discloses_nothing_before_verification_and_counts_one_click(
    portal: Any, broker: Any
) -> None:
    host, client = portal
    acc = f"PORT-{uuid.uuid4().hex[:8]}"
    await publish(broker.bootstrap_servers, account(acc))
    await known(host, acc)
    tok = token(acc)
    first = await client.get(f"/p/{tok}")
    assert first.status_code == 200
    for secret in ("Maria", "123.45", acc, PHONE_TAIL, "2026-01-15"):
        assert secret not in first.text
    assert "Acme Water" in first.text and 'name="digits"' in first.text
    assert first.headers["referrer-policy"] == "no-referrer" and first.headers["cache-control"] == "no-store"
    assert "script" not in first.text.lower()
    assert len(first.content) < 50_000
    again = await client.get(f"/p/{tok}")
    assert again.status_code == 200
    clicks = await events_of(host, broker.bootstrap_servers, topics.LINK_CLICKED, acc, want=1)
    assert len(clicks) == 1
    ev = clicks[0].data
    assert (
        isinstance(ev, LinkClicked)
        and ev.notice_id == f"{acc}:default:v1:s1:c0:sms"
        and ev.tier is Tier.REMINDER
    )
    assert clicks[0].id == f"link-clicked:{acc}:default:v1:s1:c0:sms"
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        opens = (
            await c.execute(text("SELECT opens FROM portal.link_opens WHERE account_id = :a"), {"a": acc})
        ).scalar_one()
    assert opens == 2


async def test_tampered_expired_and_foreign_links_are_refused_without_disclosure(
    portal: Any, broker: Any
) -> None:
    host, client = portal
    acc = f"PORT-{uuid.uuid4().hex[:8]}"
    await publish(broker.bootstrap_servers, account(acc))
    await known(host, acc)
    tok = token(acc)
    bad = tok[:-2] + ("AA" if tok[-2:] != "AA" else "BB")
    past = datetime.now(UTC).replace(microsecond=0) - timedelta(days=40)
    cases = {
        bad: 404,
        token(acc, key="another-key-that-we-do-not-hold-0123456789"): 404,
        token(acc, issued_at=past, expires_at=past + timedelta(days=30)): 410,
    }
    for t, status in cases.items():
        for r in (await client.get(f"/p/{t}"), await client.post(f"/p/{t}", data={"digits": PHONE_TAIL})):
            assert r.status_code == status, (t, r.text)
            assert "Maria" not in r.text and "123.45" not in r.text and "set-cookie" not in r.headers
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        n = (
            await c.execute(text("SELECT count(*) FROM portal.link_opens WHERE account_id = :a"), {"a": acc})
        ).scalar_one()
    assert n == 0  # refused links are not clicks


async def test_wrong_answers_lock_every_link_of_the_account(portal: Any, broker: Any) -> None:
    host, client = portal
    acc = f"PORT-{uuid.uuid4().hex[:8]}"
    await publish(broker.bootstrap_servers, account(acc))
    await known(host, acc)
    t1, t2 = token(acc, step=1), token(acc, step=2)
    for guess in ("0000", "1111"):
        r = await client.post(f"/p/{t1}", data={"digits": guess})
        assert r.status_code == 200 and "does not match" in r.text and "Maria" not in r.text
    r = await client.post(f"/p/{t2}", data={"digits": "2222"})  # the third failure, through another link
    assert r.status_code == 429 and "locked" in r.text
    r = await client.post(f"/p/{t1}", data={"digits": PHONE_TAIL})  # now even the right answer waits
    assert r.status_code == 429 and "set-cookie" not in r.headers
    assert (await client.get("/portal/account")).status_code == 401


async def test_unknown_account_gets_the_same_answer_as_a_wrong_guess(portal: Any) -> None:
    _, client = portal
    r = await client.post(f"/p/{token('PORT-NOBODY')}", data={"digits": PHONE_TAIL})
    assert r.status_code == 200 and "does not match" in r.text


async def test_verified_visit_shows_the_debt_and_takes_promise_dispute_and_opt_out(
    portal: Any, broker: Any
) -> None:
    host, client = portal
    acc = f"PORT-{uuid.uuid4().hex[:8]}"
    await publish(broker.bootstrap_servers, account(acc))
    await known(host, acc)
    client.cookies.clear()
    html = await sign_in(client, token(acc))
    assert "Hello Maria" in html and "$123.45" in html and "2026-01-15" in html
    csrf = csrf_of(html)

    on = (date.today() + timedelta(days=7)).isoformat()
    r = await client.post("/portal/account/promise", data={"csrf": csrf, "date": on, "amount": "50.00"})
    assert r.status_code == 303 and r.headers["location"] == "/portal/account?done=promise"
    assert "promise to pay is recorded" in (await client.get(r.headers["location"])).text
    late = (date.today() + timedelta(days=90)).isoformat()
    r = await client.post("/portal/account/promise", data={"csrf": csrf, "date": late})
    assert r.status_code == 422 and "choose a date" in r.text
    r = await client.post("/portal/account/promise", data={"csrf": "forged", "date": on})
    assert r.status_code == 403
    r = await client.post("/portal/account/dispute", data={"csrf": csrf, "note": "I paid this in December"})
    assert r.status_code == 303
    r = await client.post("/portal/account/opt-out", data={"csrf": csrf, "channel": "sms"})
    assert r.status_code == 303
    r = await client.post("/portal/account/opt-out", data={"csrf": csrf, "channel": "fax"})
    assert r.status_code == 422

    overrides = await events_of(host, broker.bootstrap_servers, topics.OVERRIDES, acc, want=3)
    evs = [e.data for e in overrides]
    assert [e.action for e in evs if isinstance(e, OverrideRequested)] == [
        "record_promise",
        "mark_dispute",
        "do_not_contact",
    ]
    promise, dispute, stop = evs  # type: ignore[misc]
    assert promise.promise_date == date.fromisoformat(on) and promise.promise_amount_minor == 5000
    assert dispute.reason == "I paid this in December" and stop.channels == ["sms"]
    assert all(e.actor.startswith("portal:debtor:") and e.role == "system" for e in evs)
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        kinds = (
            (
                await c.execute(
                    text("SELECT action FROM portal.audit_log WHERE entity_id = :a ORDER BY seq"), {"a": acc}
                )
            )
            .scalars()
            .all()
        )
        assert kinds == ["portal.promise", "portal.dispute", "portal.opt_out"]
        raw_reason = (
            await c.execute(
                text(
                    "SELECT reason FROM portal.audit_log WHERE entity_id = :a AND action = 'portal.dispute'"
                ),
                {"a": acc},
            )
        ).scalar_one()
        assert "December" not in raw_reason  # the note is sealed with the account's key
    r = await client.post("/portal/account/sign-out", data={"csrf": csrf})
    assert r.status_code == 401
    assert (await client.get("/portal/account")).status_code == 401


async def test_a_visit_is_scoped_to_its_own_account(portal: Any, broker: Any) -> None:
    host, client = portal
    a, b = f"PORT-{uuid.uuid4().hex[:8]}", f"PORT-{uuid.uuid4().hex[:8]}"
    await publish(broker.bootstrap_servers, account(a, balance=100, name="Ana One"))
    await publish(broker.bootstrap_servers, account(b, balance=999_00, name="Bea Two"))
    await known(host, a)
    await known(host, b)
    client.cookies.clear()
    html = await sign_in(client, token(a))
    assert "Ana" in html and "$1.00" in html and "Bea" not in html and "$999.00" not in html


async def test_spanish_pages(portal: Any, broker: Any) -> None:
    host, client = portal
    acc = f"PORT-{uuid.uuid4().hex[:8]}"
    await publish(broker.bootstrap_servers, account(acc))
    await known(host, acc)
    client.cookies.clear()
    tok = token(acc)
    r = await client.get(f"/p/{tok}", headers={"accept-language": "es-MX,es;q=0.9"})
    assert 'lang="es"' in r.text and "Confirme que es usted" in r.text
    r = await client.post(f"/p/{tok}", data={"digits": PHONE_TAIL, "lang": "es"})
    page = await client.get("/portal/account")
    assert "Hola Maria" in page.text and "Promesa de pago" in page.text


async def test_audit_chain_of_the_portal_verifies(portal: Any) -> None:
    host, _ = portal
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        report = await verify_chain(c, "portal")
    assert report.ok, report


async def test_old_visits_and_attempts_are_pruned_and_recent_ones_kept(portal: Any) -> None:
    from arrears_portal.verification.scheduled import prune

    host, _ = portal
    assert host.ctx is not None
    now = datetime.now(UTC)
    tag = uuid.uuid4().hex[:8]
    async with host.ctx.engine.begin() as c:
        for name, ended, expires in (
            (f"old-{tag}", None, now - timedelta(days=2)),
            (f"ended-{tag}", now - timedelta(days=3), now + timedelta(minutes=5)),
            (f"live-{tag}", None, now + timedelta(minutes=5)),
        ):
            await c.execute(
                text(
                    """INSERT INTO portal.sessions (token_sha256, account_id, notice_id, locale, csrf, created_at,
                           expires_at, ended_at) VALUES (:d, 'A', 'N', 'en', 'x', :now, :exp, :end)"""
                ),
                {"d": name, "now": now - timedelta(days=4), "exp": expires, "end": ended},
            )
        for age in (31, 1):
            await c.execute(
                text(
                    """INSERT INTO portal.verification_attempts (account_id, notice_id, ok, client, at)
                       VALUES (:a, 'N', false, 'c', :at)"""
                ),
                {"a": f"PRUNE-{tag}", "at": now - timedelta(days=age)},
            )
        await prune(c, "portal", now)
        left = (
            (
                await c.execute(
                    text("SELECT token_sha256 FROM portal.sessions WHERE token_sha256 LIKE :t"),
                    {"t": f"%-{tag}"},
                )
            )
            .scalars()
            .all()
        )
        attempts = (
            await c.execute(
                text("SELECT count(*) FROM portal.verification_attempts WHERE account_id = :a"),
                {"a": f"PRUNE-{tag}"},
            )
        ).scalar_one()
    assert left == [f"live-{tag}"] and attempts == 1
