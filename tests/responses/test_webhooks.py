"""responses through the real service host (real broker, real Postgres) and its FastAPI app."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from arrears_responses.__main__ import definition
from arrears_responses.contacts.lookup import address_index
from arrears_responses.settings import ResponsesSettings
from arrears_responses.webhooks.models import QuoWebhookEvent
from arrears_responses.webhooks.service import handle_quo_event
from arrears_shared import topics
from arrears_shared.cloudevents import Envelope, encode, header_map
from arrears_shared.events import DeliveryStatus, Intent, MessageSent, ReplyReceived, Tier
from arrears_shared.service import ServiceHost
from arrears_shared.vault.cipher import is_sealed
from auth_support import bearer, issue_key_async
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from vault_support import open_records, row_record

KEY = base64.b64encode(b"test-signing-key-0123456789abcdef").decode()
OTHER_KEY = base64.b64encode(b"attacker-key-xxxxxxxxxxxxxxxxxxx").decode()
OUR_NUMBER = "+14155550000"
WHSEC = "whsec_" + base64.b64encode(b"quo-new-webhooks-secret-0123456").decode()


def sign(
    body: bytes, key: str = KEY, ts_ms: int | None = None, header: str = "openphone-signature"
) -> dict[str, str]:
    ts = str(ts_ms if ts_ms is not None else int(time.time() * 1000))
    digest = hmac.new(base64.b64decode(key), ts.encode() + b"." + body, hashlib.sha256).digest()
    return {header: f"hmac;1;{ts};{base64.b64encode(digest).decode()}", "content-type": "application/json"}


def inbound(sender: str, text_: str, *, event_id: str | None = None, msg_id: str | None = None) -> bytes:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {
            "id": event_id or f"EV{uuid.uuid4().hex}",
            "object": "event",
            "apiVersion": "v3",
            "createdAt": now,
            "type": "message.received",
            "data": {
                "object": {
                    "id": msg_id or f"AC{uuid.uuid4().hex}",
                    "object": "message",
                    "from": sender,
                    "to": [OUR_NUMBER],
                    "direction": "incoming",
                    "text": text_,
                    "status": "received",
                    "createdAt": now,
                    "userId": "US123",
                    "phoneNumberId": "PN123",
                }
            },
        }
    ).encode()


def unique_number() -> str:
    return "+1415" + str(uuid.uuid4().int)[:7]


@pytest.fixture(scope="module")
async def service(
    broker: Any, fresh_database_url: Callable[..., str]
) -> AsyncIterator[tuple[ServiceHost, httpx.AsyncClient]]:
    settings = ResponsesSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=fresh_database_url("responses"),
        quo_webhook_signing_key=KEY,
        quo_webhook_secret=WHSEC,
        runner_poll_timeout_ms=100,
        outbox_poll_s=0.02,
    )
    host = ServiceHost(definition(settings))
    app = host.build_app()
    await host.start()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://responses"
    ) as client:
        yield host, client
    await host.stop()


async def send_message_sent(bootstrap: str, ev: MessageSent) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await p.start()
    try:
        rec = encode(ev, source="dispatcher-sms", id=f"ms-{ev.notice_id}")
        await p.send_and_wait(rec.topic, rec.value, key=rec.key, headers=rec.headers)
    finally:
        await p.stop()


async def wait_for(check: Callable[[], Any], within_s: float = 20.0) -> Any:
    deadline = time.monotonic() + within_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


def message_sent(account: str, number: str, notice: str, pmid: str | None = None) -> MessageSent:
    return MessageSent(
        account_id=account,
        notice_id=notice,
        channel="sms",
        status=DeliveryStatus.SENT,
        provider="quo",
        provider_message_id=pmid or f"AC{uuid.uuid4().hex}",
        to=number,
        tier=Tier.REMINDER,
        step=1,
        sent_at=datetime.now(UTC),
    )


async def index_contact(
    host: ServiceHost, broker: Any, account: str, number: str, notice: str, pmid: str | None = None
) -> None:
    await send_message_sent(broker.bootstrap_servers, message_sent(account, number, notice, pmid))

    async def indexed() -> bool:
        async with host.ctx.engine.connect() as c:  # type: ignore[union-attr]
            row = await c.execute(
                text(
                    "SELECT notice_id, address FROM responses.contacts WHERE channel='sms' AND address_bidx=:b"
                ),
                {"b": address_index("sms", number)},
            )
            found = row.first()
            if found is None or found.notice_id != notice:
                return False
            assert is_sealed(found.address) and number not in found.address  # found by its blind index only
            return True

    await wait_for(indexed)


def service_engine(host: ServiceHost) -> AsyncEngine:
    """The running service's engine: its database holds the vault whose keys open what it wrote."""
    assert host.ctx is not None
    return host.ctx.engine


async def of_account(engine: AsyncEngine, account: str, recs: Sequence[Any]) -> list[Envelope]:
    """The records about `account` (by subject: other tests' records are sealed with their own databases'
    keys), decoded as a consumer does."""
    mine = [(r.headers, r.value) for r in recs if header_map(r.headers).get("ce_subject") == account]
    if not mine:
        return []
    async with engine.connect() as conn:
        envs = await open_records(conn, mine)
    return [e for e in envs if e.subject == account]


async def collect_replies(
    bootstrap: str, account: str, engine: AsyncEngine, settle_s: float = 2.0, within_s: float = 20.0
) -> list[Any]:
    """Every ReplyReceived for `account` on the real topic (waits for the first, then `settle_s` more), its
    personal fields opened with the data keys of `engine`'s database (the service's)."""
    c = AIOKafkaConsumer(
        topics.REPLY_RECEIVED,
        bootstrap_servers=bootstrap,
        group_id=f"t-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
    )
    await c.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + within_s
        first_at: float | None = None
        while time.monotonic() < deadline and (first_at is None or time.monotonic() - first_at < settle_s):
            batch = await c.getmany(timeout_ms=200)
            for recs in batch.values():
                for env in await of_account(engine, account, recs):
                    found.append(env)
                    first_at = first_at or time.monotonic()
    finally:
        await c.stop()
    return found


async def test_signed_stop_reply_from_known_number_emits_exactly_one_reply_received(service, broker) -> None:
    host, client = service
    account, number, notice = f"PME-R-{uuid.uuid4().hex[:6]}", unique_number(), f"n-{uuid.uuid4().hex[:8]}"
    await index_contact(host, broker, account, number, notice)

    body = inbound(number, "STOP por favor")
    r = await client.post("/webhooks/quo", content=body, headers=sign(body))
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "processed", "reply_id": r.json()["reply_id"], "intent": "opt_out"}
    # the provider retries the same event; a second event carries the same message: neither emits again
    assert (await client.post("/webhooks/quo", content=body, headers=sign(body))).json()[
        "status"
    ] == "duplicate"
    msg_id = json.loads(body)["data"]["object"]["id"]
    body2 = inbound(number, "STOP por favor", msg_id=msg_id)
    assert (await client.post("/webhooks/quo", content=body2, headers=sign(body2))).json()[
        "status"
    ] == "duplicate"

    envs = await collect_replies(broker.bootstrap_servers, account, service_engine(host))
    assert len(envs) == 1
    ev = envs[0].data
    assert isinstance(ev, ReplyReceived)
    assert ev.intent is Intent.OPT_OUT and ev.confidence >= 0.95
    assert ev.channel == "sms" and ev.from_address == number
    assert ev.in_reply_to_notice_id == notice and ev.provider_message_id == msg_id
    assert envs[0].type == ReplyReceived.ce_type and envs[0].source == "responses"


async def test_promise_reply_carries_amount_and_date(service, broker) -> None:
    host, client = service
    account, number = f"PME-P-{uuid.uuid4().hex[:6]}", unique_number()
    await index_contact(host, broker, account, number, "n-promise")
    body = inbound(number, "I'll pay $200 on Friday")
    r = await client.post("/webhooks/quo", content=body, headers=sign(body, header="X-OpenPhone-Signature"))
    assert r.status_code == 200 and r.json()["intent"] == "promise_to_pay"
    [env] = await collect_replies(broker.bootstrap_servers, account, service_engine(host), settle_s=0.5)
    assert env.data.promise_amount_minor == 20_000
    assert env.data.promise_date is not None and env.data.promise_date.weekday() == 4


@pytest.mark.parametrize(
    ("case", "make_headers"),
    [
        ("missing", lambda body: {"content-type": "application/json"}),
        ("forged", lambda body: sign(body, key=OTHER_KEY)),
        ("tampered", lambda body: sign(body.replace(b"STOP", b"HELP"))),
        ("expired", lambda body: sign(body, ts_ms=int((time.time() - 600) * 1000))),
        ("future", lambda body: sign(body, ts_ms=int((time.time() + 600) * 1000))),
        ("garbage", lambda body: {"openphone-signature": "hmac;1;abc;!!!"}),
    ],
)
async def test_bad_signatures_are_rejected_and_change_nothing(service, case: str, make_headers) -> None:
    host, client = service
    body = inbound(unique_number(), "STOP")
    event_id = json.loads(body)["id"]
    r = await client.post("/webhooks/quo", content=body, headers=make_headers(body))
    assert r.status_code == 401, (case, r.text)
    async with host.ctx.engine.connect() as c:
        n = await c.execute(
            text("SELECT count(*) FROM responses.webhook_events WHERE id = :i"), {"i": event_id}
        )
        assert n.scalar() == 0
    # the same body, correctly signed, is then accepted: the rejection was about the signature only
    ok = await client.post("/webhooks/quo", content=body, headers=sign(body))
    assert ok.status_code == 200 and ok.json()["status"] == "unmatched"


async def test_replayed_event_id_is_a_no_op(service) -> None:
    host, client = service
    body = inbound(unique_number(), "who is this?")
    first = await client.post("/webhooks/quo", content=body, headers=sign(body))
    again = await client.post("/webhooks/quo", content=body, headers=sign(body))
    assert first.json()["status"] == "unmatched" and again.json()["status"] == "duplicate"
    async with host.ctx.engine.connect() as c:
        reply_id = first.json()["reply_id"]
        n = await c.execute(
            text("SELECT count(*) FROM responses.replies WHERE reply_id = :r"), {"r": reply_id}
        )
        assert n.scalar() == 1


async def test_unknown_number_is_stored_unmatched_without_event(service, broker) -> None:
    host, client = service
    number = unique_number()
    body = inbound(number, "wrong number")
    r = await client.post("/webhooks/quo", content=body, headers=sign(body))  # public: no credential
    assert r.json()["status"] == "unmatched"
    # the replies hold personal data: a credential with accounts.read is needed to list them
    assert (await client.get("/replies/unmatched")).status_code == 401
    async with host.ctx.engine.begin() as conn:
        collector, viewer = await issue_key_async(conn, "collector"), await issue_key_async(conn, "viewer")
    assert (await client.get("/replies/unmatched", headers=bearer(viewer))).status_code == 403
    listed = (
        await client.get("/replies/unmatched", params={"limit": 1000}, headers=bearer(collector))
    ).json()
    mine = [i for i in listed["items"] if i["from_address"] == number]
    assert len(mine) == 1 and mine[0]["intent"] == "wrong_number" and listed["count"] >= 1


async def test_malformed_body_with_valid_signature_is_400_and_not_recorded(service) -> None:
    host, client = service
    body = json.dumps({"id": "EVbad", "object": "event", "type": "message.received", "data": {}}).encode()
    assert (await client.post("/webhooks/quo", content=body, headers=sign(body))).status_code == 400
    async with host.ctx.engine.connect() as c:
        n = await c.execute(text("SELECT count(*) FROM responses.webhook_events WHERE id = 'EVbad'"))
        assert n.scalar() == 0


async def test_delivery_status_is_stored_on_the_sent_message(service, broker) -> None:
    host, client = service
    account, number, pmid = f"PME-D-{uuid.uuid4().hex[:6]}", unique_number(), f"AC{uuid.uuid4().hex}"
    await index_contact(host, broker, account, number, "n-deliv", pmid)
    for type_, status in (("message.delivered", "delivered"),):
        body = json.dumps(
            {
                "id": f"EV{uuid.uuid4().hex}",
                "object": "event",
                "type": type_,
                "createdAt": datetime.now(UTC).isoformat(),
                "data": {
                    "object": {
                        "id": pmid,
                        "from": OUR_NUMBER,
                        "to": [number],
                        "direction": "outgoing",
                        "status": status,
                        "text": "Reply STOP to opt out",
                        "createdAt": datetime.now(UTC).isoformat(),
                    }
                },
            }
        ).encode()
        r = await client.post("/webhooks/quo", content=body, headers=sign(body))
        assert r.json()["status"] == "delivery_status"
    async with host.ctx.engine.connect() as c:
        row = (
            await c.execute(
                text(
                    "SELECT status, notice_id, account_id FROM responses.delivery_status WHERE provider_message_id=:p"
                ),
                {"p": pmid},
            )
        ).one()
    assert tuple(row) == ("delivered", "n-deliv", account)


async def collect_notices(
    bootstrap: str, account: str, engine: AsyncEngine, settle_s: float = 2.0, within_s: float = 20.0
) -> list[Any]:
    """Every NoticeDue for `account` on the real notice-due topic, personal fields opened (`collect_replies`)."""
    c = AIOKafkaConsumer(
        topics.NOTICE_DUE,
        bootstrap_servers=bootstrap,
        group_id=f"t-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
    )
    await c.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + within_s
        first_at: float | None = None
        while time.monotonic() < deadline and (first_at is None or time.monotonic() - first_at < settle_s):
            for recs in (await c.getmany(timeout_ms=200)).values():
                for env in await of_account(engine, account, recs):
                    found.append(env.data)
                    first_at = first_at or time.monotonic()
    finally:
        await c.stop()
    return found


async def test_sms_opt_out_is_confirmed_once_and_help_is_answered(service, broker) -> None:
    host, client = service
    account, number = f"PME-A-{uuid.uuid4().hex[:6]}", unique_number()
    await index_contact(host, broker, account, number, "n-auto")
    for text_ in ("HELP", "help", "STOP", "stop please", "STOP"):  # two HELPs in the hour, three opt-outs
        body = inbound(number, text_)
        r = await client.post("/webhooks/quo", content=body, headers=sign(body))
        assert r.json()["status"] == "processed", r.text
    notices = await collect_notices(broker.bootstrap_servers, account, service_engine(host))
    by_purpose = {n.purpose: n for n in notices}
    assert sorted(n.purpose for n in notices) == ["help", "opt_out_confirmation"], notices
    confirmation, help_ = by_purpose["opt_out_confirmation"], by_purpose["help"]
    assert confirmation.to == number and confirmation.channel == "sms"
    assert "unsubscribed" in (confirmation.text or "") and "STOP" in (help_.text or "")
    assert confirmation.priority > 0 and confirmation.expires_at is not None
    replies = await collect_replies(broker.bootstrap_servers, account, service_engine(host), settle_s=0.5)
    assert [e.data.intent for e in replies].count(Intent.OPT_OUT) == 3  # every opt-out still reaches everyone


async def test_auto_replies_can_be_switched_off(service, broker) -> None:
    host, _ = service
    account, number = f"PME-N-{uuid.uuid4().hex[:6]}", unique_number()
    await index_contact(host, broker, account, number, "n-noauto")
    off = host.ctx.settings.model_copy(update={"responses_auto_replies": False})  # type: ignore[union-attr]
    event = QuoWebhookEvent.model_validate_json(inbound(number, "STOP"))
    async with host.ctx.transaction() as tx:  # type: ignore[union-attr]
        ack = await handle_quo_event(tx, event, settings=off)
        assert ack.intent == "opt_out" and ack.status == "processed"
        n = await tx.conn.execute(
            text("SELECT count(*) FROM responses.auto_replies WHERE account_id = :a"), {"a": account}
        )
        assert n.scalar() == 0
    assert await collect_notices(broker.bootstrap_servers, account, service_engine(host), within_s=3) == []


# -- QUO's new webhook system (Standard Webhooks), issue #13 ---------------------------------------------
def sign_standard(
    body: bytes, secret: str = WHSEC, *, wid: str | None = None, ts: int | None = None
) -> dict[str, str]:
    """Signed the way the emulator (and QUO) do, by hand from the spec: the service verifies with the
    standardwebhooks library, so a disagreement between the two would show here."""
    from arrears_emulators.quo.signing import sign_standard as emulator_sign

    headers = emulator_sign(body, [secret], wid or f"msg_{uuid.uuid4().hex}", ts or int(time.time()))
    return headers | {"content-type": "application/json"}


def standard_event(type_: str, resource: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "id": f"EV{uuid.uuid4().hex}",
            "apiVersion": "2026-03-30",
            "createdAt": datetime.now(UTC).isoformat(),
            "type": type_,
            "data": {"resource": resource, "context": {"phoneNumberId": "PN123"}, "links": {"quo": None}},
        }
    ).encode()


async def test_standard_webhook_reply_is_processed_and_its_delivery_id_is_replay_protected(
    service, broker
) -> None:
    host, client = service
    account, number = f"PME-S-{uuid.uuid4().hex[:6]}", unique_number()
    await index_contact(host, broker, account, number, "n-std")
    body = standard_event(
        "message.received",
        {
            "id": f"AC{uuid.uuid4().hex}",
            "from": number,
            "to": [OUR_NUMBER],
            "direction": "incoming",
            "text": "call me please",
            "createdAt": datetime.now(UTC).isoformat(),
        },
    )
    headers = sign_standard(body)
    r = await client.post("/webhooks/quo", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "processed", r.text
    # the same delivery again (a replay inside the window, or QUO's retry): a no-op on webhook-id
    r = await client.post("/webhooks/quo", content=body, headers=headers)
    assert r.json()["status"] == "duplicate"
    # forged, stale, or a new-system delivery signed with the legacy key: refused, never downgraded
    assert (
        await client.post(
            "/webhooks/quo", content=body, headers=sign_standard(body, secret="whsec_" + OTHER_KEY)
        )
    ).status_code == 401
    stale = sign_standard(body, ts=int(time.time()) - 3600)
    assert (await client.post("/webhooks/quo", content=body, headers=stale)).status_code == 401
    mixed = sign(body) | {"webhook-id": "msg_x", "webhook-timestamp": str(int(time.time()))}
    assert (await client.post("/webhooks/quo", content=body, headers=mixed)).status_code == 401


async def test_message_failed_is_recorded_on_the_notice(service, broker) -> None:
    host, client = service
    account, number, pmid = f"PME-F-{uuid.uuid4().hex[:6]}", unique_number(), f"AC{uuid.uuid4().hex}"
    await index_contact(host, broker, account, number, "n-failed", pmid)
    body = standard_event(
        "message.failed",
        {
            "id": pmid,
            "from": OUR_NUMBER,
            "to": [number],
            "direction": "outgoing",
            "status": "failed",
            "text": "Reply STOP to opt out",
            "errorCode": "30003",
            "createdAt": datetime.now(UTC).isoformat(),
        },
    )
    r = await client.post("/webhooks/quo", content=body, headers=sign_standard(body))
    assert r.json()["status"] == "delivery_status"
    async with host.ctx.engine.connect() as c:
        row = (
            await c.execute(
                text("SELECT status, notice_id FROM responses.delivery_status WHERE provider_message_id=:p"),
                {"p": pmid},
            )
        ).one()
    assert tuple(row) == ("failed", "n-failed")
    # message.undelivered exists in neither system: ignored, not a status
    legacy = json.dumps(
        {
            "id": f"EV{uuid.uuid4().hex}",
            "object": "event",
            "type": "message.undelivered",
            "data": {"object": {"id": pmid, "from": OUR_NUMBER}},
        }
    ).encode()
    assert (await client.post("/webhooks/quo", content=legacy, headers=sign(legacy))).json()[
        "status"
    ] == "ignored"


async def failures_published(host: ServiceHost, pmid: str) -> list[Any]:
    """The failed `message-sent` events responses wrote to its outbox for provider message `pmid`."""
    async with host.ctx.engine.connect() as c:  # type: ignore[union-attr]
        rows = (
            await c.execute(
                text("SELECT headers, value FROM responses.outbox WHERE topic = :t ORDER BY id"),
                {"t": topics.MESSAGE_SENT},
            )
        ).all()
        envs = await open_records(c, [row_record(r) for r in rows])
    return [e for e in envs if isinstance(e.data, MessageSent) and e.data.provider_message_id == pmid]


def failed_sms(pmid: str, number: str, code: str) -> bytes:
    return standard_event(
        "message.failed",
        {
            "id": pmid,
            "from": OUR_NUMBER,
            "to": [number],
            "direction": "outgoing",
            "status": "failed",
            "text": "Reply STOP to opt out",
            "errorCode": code,
            "errorMessage": "Unreachable destination handset" if code == "30003" else "Unknown error",
            "createdAt": datetime.now(UTC).isoformat(),
        },
    )


async def test_message_failed_publishes_a_failed_message_sent_once(service, broker) -> None:
    """Issue #13: QUO's message.failed becomes a failed `message-sent` for the notice (through the outbox,
    in the webhook's transaction), `permanent` from the carrier code, published once however it is redelivered."""
    host, client = service
    account, number, pmid = f"PME-FP-{uuid.uuid4().hex[:6]}", unique_number(), f"AC{uuid.uuid4().hex}"
    await index_contact(host, broker, account, number, "n-fail-perm", pmid)
    body = failed_sms(pmid, number, "30003")  # unreachable destination handset: a bad number
    headers = sign_standard(body)
    assert (await client.post("/webhooks/quo", content=body, headers=headers)).json()["status"] == (
        "delivery_status"
    )
    [env] = await failures_published(host, pmid)
    assert env.id == f"sms-failed:{pmid}" and env.subject == account
    ev = env.data
    assert isinstance(ev, MessageSent)
    assert (ev.status, ev.permanent, ev.channel, ev.notice_id) == (
        DeliveryStatus.FAILED,
        True,
        "sms",
        "n-fail-perm",
    )
    assert (ev.tier, ev.step, ev.to, ev.provider) == (Tier.REMINDER, 1, number, "quo")
    assert ev.reason is not None and ev.reason.startswith("quo 30003: Unreachable")
    # QUO redelivers the same webhook; the same failure arrives again under a new event id: nothing new
    assert (await client.post("/webhooks/quo", content=body, headers=headers)).json()["status"] == "duplicate"
    again = failed_sms(pmid, number, "30003")
    assert (
        await client.post("/webhooks/quo", content=again, headers=sign_standard(again))
    ).status_code == 200
    assert len(await failures_published(host, pmid)) == 1

    # a transient carrier error (30008 unknown error) is published too, but not as a bad number
    transient_pmid = f"AC{uuid.uuid4().hex}"
    await index_contact(host, broker, account, unique_number(), "n-fail-transient", transient_pmid)
    body = failed_sms(transient_pmid, number, "30008")
    assert (await client.post("/webhooks/quo", content=body, headers=sign_standard(body))).status_code == 200
    [env] = await failures_published(host, transient_pmid)
    assert env.id == f"sms-failed:{transient_pmid}"
    assert env.data.status is DeliveryStatus.FAILED and env.data.permanent is False
    assert env.data.notice_id == "n-fail-transient"


async def test_message_failed_before_its_message_sent_is_published_when_it_arrives(service, broker) -> None:
    """The webhook can beat the dispatcher's `message-sent`: the failure waits on delivery_status and is
    published (once) when responses consumes that `message-sent`."""
    host, client = service
    account, number, pmid = f"PME-FE-{uuid.uuid4().hex[:6]}", unique_number(), f"AC{uuid.uuid4().hex}"
    body = failed_sms(pmid, number, "21614")  # not a mobile number
    assert (await client.post("/webhooks/quo", content=body, headers=sign_standard(body))).status_code == 200
    assert await failures_published(host, pmid) == []  # unknown message: nothing to publish yet
    await index_contact(host, broker, account, number, "n-fail-early", pmid)

    async def published() -> list[Any]:
        return await failures_published(host, pmid)

    [env] = await wait_for(published)
    assert env.id == f"sms-failed:{pmid}" and env.data.permanent is True
    assert env.data.notice_id == "n-fail-early" and env.data.account_id == account
