"""QUO (OpenPhone) emulator, driven through the production `QuoClient`."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from arrears_dispatcher_sms.quo_client import QuoClient
from arrears_emulators.quo.signing import sign_openphone
from arrears_shared.providers.errors import (
    ProviderAuthError,
    ProviderInDoubt,
    ProviderPermanentError,
    ProviderRateLimited,
    ProviderTransientError,
)
from arrears_shared.providers.quo_signature import InvalidSignature, verify_openphone_signature

from .conftest import (
    INVALID_NUMBER,
    QUO_API_KEY,
    QUO_FROM,
    QUO_PN_ID,
    SIGNING_KEY,
    UNDELIVERED_NUMBER,
    Control,
    Receiver,
)

CUSTOMER = "+15550123456"


async def test_send_is_recorded_and_reconcilable(quo: Control, quo_client: QuoClient) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    sent = await quo_client.send_message(
        content="Your balance of $120.00 is overdue.", from_=QUO_FROM, to=CUSTOMER
    )
    assert sent.id.startswith("AC")
    assert sent.to == [CUSTOMER] and sent.from_ == QUO_FROM and sent.phone_number_id == QUO_PN_ID
    assert sent.direction == "outgoing" and sent.status == "queued"

    ledger = quo.ledger()
    assert ledger["count"] == 1 and ledger["by_recipient"] == {CUSTOMER: 1}
    assert ledger["entries"][0]["provider_id"] == sent.id and not ledger["entries"][0]["dropped"]

    for phone in (QUO_PN_ID,):
        found = await quo_client.list_messages(
            phone_number_id=phone,
            participant=CUSTOMER,
            created_after=before,
            created_before=datetime.now(UTC) + timedelta(seconds=1),
        )
        assert [m.id for m in found] == [sent.id]
    assert await quo_client.list_messages(phone_number_id=QUO_PN_ID, participant="+15550000001") == []
    later = await quo_client.list_messages(
        phone_number_id=QUO_PN_ID,
        participant=CUSTOMER,
        created_after=datetime.now(UTC) + timedelta(hours=1),
    )
    assert later == []

    await asyncio.sleep(0.1)
    assert (await quo_client.get_message(sent.id)).status == "delivered"


async def test_list_follows_page_tokens(quo: Control, quo_client: QuoClient) -> None:
    ids = [(await quo_client.send_message(content=f"m{i}", from_=QUO_FROM, to=CUSTOMER)).id for i in range(5)]
    found = await quo_client.list_messages(phone_number_id=QUO_PN_ID, participant=CUSTOMER, max_results=2)
    assert sorted(m.id for m in found) == sorted(ids)
    assert quo.stats()["by_operation"]["list"] == 3
    limited = await quo_client.list_messages(
        phone_number_id=QUO_PN_ID, participant=CUSTOMER, max_results=2, limit=3
    )
    assert len(limited) == 3


async def test_permanent_errors(quo: Control, quo_client: QuoClient) -> None:
    with pytest.raises(ProviderPermanentError) as invalid:
        await quo_client.send_message(content="hello", from_=QUO_FROM, to=INVALID_NUMBER)
    assert invalid.value.status == 400 and "Invalid recipient" in invalid.value.reason
    with pytest.raises(ProviderPermanentError) as not_e164:
        await quo_client.send_message(content="hello", from_=QUO_FROM, to="5550123456")
    assert not_e164.value.status == 400
    with pytest.raises(ProviderPermanentError):
        await quo_client.send_message(content="x" * 1601, from_=QUO_FROM, to=CUSTOMER)
    with pytest.raises(ProviderPermanentError) as missing:
        await quo_client.get_message("ACdoesnotexist")
    assert missing.value.status == 404
    assert quo.ledger()["count"] == 0


async def test_wrong_api_key_is_an_auth_error(quo: Control) -> None:
    async with QuoClient(api_key="wrong", base_url=quo.url + "/v1") as client:
        with pytest.raises(ProviderAuthError) as exc:
            await client.send_message(content="hello", from_=QUO_FROM, to=CUSTOMER)
    assert exc.value.status == 401


async def test_rate_limit_10_per_second(quo: Control, quo_client: QuoClient) -> None:
    started = time.monotonic()
    results = await asyncio.gather(
        *(quo_client.list_messages(phone_number_id=QUO_PN_ID, participant=CUSTOMER) for _ in range(25)),
        return_exceptions=True,
    )
    elapsed = time.monotonic() - started
    limited = [r for r in results if isinstance(r, ProviderRateLimited)]
    assert all(isinstance(r, list | ProviderRateLimited) for r in results), results
    assert len(limited) >= 1
    assert 25 - len(limited) <= 10 + math.ceil(elapsed * 10)  # burst of 10, then 10 per second
    assert all(r.retry_after_s >= 1 and r.status == 429 for r in limited)
    assert quo.stats()["rate_limited"] == len(limited)

    quo.limits(enabled=False)
    results = await asyncio.gather(
        *(quo_client.list_messages(phone_number_id=QUO_PN_ID, participant=CUSTOMER) for _ in range(20))
    )
    assert len(results) == 20

    quo.limits(enabled=True, rate=0.2, window_s=10, algorithm="sliding_window")  # 2 per 10 s
    outcomes = await asyncio.gather(
        *(quo_client.send_message(content="hi", from_=QUO_FROM, to=CUSTOMER) for _ in range(4)),
        return_exceptions=True,
    )
    limited = [o for o in outcomes if isinstance(o, ProviderRateLimited)]
    assert len(limited) == 2 and all(5 <= o.retry_after_s <= 10 for o in limited)
    assert quo.ledger()["count"] == 2


async def test_injected_5xx_is_transient(quo: Control, quo_client: QuoClient) -> None:
    quo.faults(error_5xx={"next": 3, "status": 503, "operations": ["send"]})
    for _ in range(3):
        with pytest.raises(ProviderTransientError) as exc:
            await quo_client.send_message(content="hello", from_=QUO_FROM, to=CUSTOMER)
        assert exc.value.status == 503
    await quo_client.send_message(content="hello", from_=QUO_FROM, to=CUSTOMER)
    assert quo.ledger()["count"] == 1
    assert quo.stats()["faults_injected"] == {"error_5xx": 3}


async def test_accept_then_drop_is_in_doubt_and_reconcilable(quo: Control, quo_client: QuoClient) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    quo.faults(accept_then_drop={"next": 1})
    with pytest.raises(ProviderInDoubt):
        await quo_client.send_message(content="Final notice", from_=QUO_FROM, to=CUSTOMER)
    ledger = quo.ledger()
    assert ledger["count"] == 1 and ledger["entries"][0]["dropped"] is True
    found = await quo_client.list_messages(
        phone_number_id=QUO_PN_ID, participant=CUSTOMER, created_after=start
    )
    assert [m.id for m in found] == [ledger["entries"][0]["provider_id"]]
    assert found[0].text == "Final notice"


async def test_timeout_is_in_doubt_for_send_and_transient_for_reads(quo: Control) -> None:
    quo.faults(timeout={"next": 2, "hang_s": 3})
    async with QuoClient(api_key=QUO_API_KEY, base_url=quo.url + "/v1", timeout_s=0.3) as client:
        started = time.monotonic()
        with pytest.raises(ProviderInDoubt):
            await client.send_message(content="hello", from_=QUO_FROM, to=CUSTOMER)
        with pytest.raises(ProviderTransientError):
            await client.list_messages(phone_number_id=QUO_PN_ID, participant=CUSTOMER)
        assert time.monotonic() - started < 2
    assert quo.ledger()["count"] == 0


async def test_slow_and_probabilistic_faults(quo: Control, quo_client: QuoClient) -> None:
    quo.faults(slow={"next": 1, "delay_ms": 150})
    started = time.monotonic()
    await quo_client.send_message(content="hello", from_=QUO_FROM, to=CUSTOMER)
    assert time.monotonic() - started >= 0.15

    quo.limits(enabled=False)
    quo.faults(seed=1, error_5xx={"probability": 0.5})
    outcomes = await asyncio.gather(
        *(quo_client.get_message("ACmissing") for _ in range(40)), return_exceptions=True
    )
    transient = sum(isinstance(o, ProviderTransientError) for o in outcomes)
    assert 5 < transient < 35
    assert quo.stats()["faults_injected"]["error_5xx"] == transient


async def test_signed_webhooks(quo: Control, quo_client: QuoClient, receiver: Receiver) -> None:
    """Legacy webhooks (openphone-signature): message.received and message.delivered only; an undelivered
    SMS sends no event at all (there is no message.undelivered) and shows only in the message's status."""
    quo.put("/_emulator/webhook", {"url": receiver.url})
    sent = await quo_client.send_message(content="hello", from_=QUO_FROM, to=CUSTOMER)
    refused = await quo_client.send_message(content="hello", from_=QUO_FROM, to=UNDELIVERED_NUMBER)
    quo.post("/_emulator/inbound", {"from": CUSTOMER, "to": QUO_FROM, "content": "STOP"})

    requests = await receiver.wait_for(2)
    await asyncio.sleep(0.2)  # nothing else arrives
    assert len(receiver.requests) == 2
    events = {}
    for headers, body in requests:
        verify_openphone_signature(headers, body, SIGNING_KEY)
        event = json.loads(body)
        assert event["object"] == "event" and event["id"].startswith("EV") and event["apiVersion"] == "v3"
        events[event["type"]] = event["data"]["object"]
    assert set(events) == {"message.delivered", "message.received"}
    assert events["message.delivered"]["id"] == sent.id
    assert (await quo_client.get_message(refused.id)).status == "undelivered"
    received = events["message.received"]
    assert received["direction"] == "incoming" and received["from"] == CUSTOMER and received["text"] == "STOP"

    incoming = await quo_client.list_messages(phone_number_id=QUO_PN_ID, participant=CUSTOMER)
    assert {m.direction for m in incoming} == {"incoming", "outgoing"}
    assert quo.ledger()["count"] == 2  # the ledger holds sends only

    headers, body = requests[0]
    with pytest.raises(InvalidSignature, match="mismatch"):
        verify_openphone_signature(headers, body.replace(b"message", b"massage"), SIGNING_KEY)
    with pytest.raises(InvalidSignature, match="tolerance"):
        verify_openphone_signature(headers, body, SIGNING_KEY, now=time.time() + 3600)
    with pytest.raises(InvalidSignature, match="mismatch"):
        verify_openphone_signature(headers, body, "b3RoZXIta2V5")
    with pytest.raises(InvalidSignature, match="missing"):
        verify_openphone_signature({}, body, SIGNING_KEY)
    renamed = {"X-OpenPhone-Signature": headers["openphone-signature"]}
    verify_openphone_signature(renamed, body, SIGNING_KEY)


async def test_webhook_retries_until_receiver_is_up(
    quo: Control, quo_client: QuoClient, receiver: Receiver
) -> None:
    receiver.fail_next = 2
    quo.put("/_emulator/webhook", {"url": receiver.url})
    await quo_client.send_message(content="hello", from_=QUO_FROM, to=CUSTOMER)
    [(headers, body)] = await receiver.wait_for(1)
    verify_openphone_signature(headers, body, SIGNING_KEY)
    assert receiver.failed == 2
    for _ in range(500):
        if (extra := quo.stats()["extra"])["webhooks_delivered"] >= 1:
            break
        await asyncio.sleep(0.01)
    assert extra["webhooks_failed_attempts"] == 2 and extra["webhooks_delivered"] == 1


def test_sign_openphone_round_trip() -> None:
    body = b'{"type":"message.received"}'
    now_ms = int(time.time() * 1000)
    header = sign_openphone(body, SIGNING_KEY, now_ms)
    assert header.startswith(f"hmac;1;{now_ms};")
    verify_openphone_signature({"OpenPhone-Signature": header}, body, SIGNING_KEY)
    old = sign_openphone(body, SIGNING_KEY, now_ms - 301_000)
    with pytest.raises(InvalidSignature):
        verify_openphone_signature({"openphone-signature": old}, body, SIGNING_KEY)
    verify_openphone_signature({"openphone-signature": old}, body, SIGNING_KEY, tolerance_s=600)


async def test_command_line_dispatcher() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "arrears_emulators",
        "quo",
        "--port",
        "0",
        "--api-key",
        "cli-key",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=20)).decode()
        assert line.startswith("EMULATOR quo ready http://127.0.0.1:"), line
        url = line.split()[3]
        async with QuoClient(api_key="cli-key", base_url=url + "/v1") as client:
            sent = await client.send_message(content="hello", from_=QUO_FROM, to=CUSTOMER)
            assert (await client.get_message(sent.id)).id == sent.id
    finally:
        if proc.returncode is None:
            proc.terminate()
        returncode = await asyncio.wait_for(proc.wait(), timeout=10)
    # uvicorn re-raises the captured SIGTERM after its graceful shutdown
    assert returncode in (0, -signal.SIGTERM)


# -- wire fidelity (issue #13) ----------------------------------------------------------------------------
async def test_standard_webhooks_verify_with_the_reference_library(
    quo: Control, quo_client: QuoClient, receiver: Receiver
) -> None:
    """New webhooks: Standard Webhooks headers (checked with the spec's library), the 2026-03-30 envelope
    (data.resource / data.context) and message.failed for an SMS the carrier refused."""
    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    secret = "whsec_" + base64.b64encode(b"quo-standard-webhook-secret-0001").decode()
    quo.put("/_emulator/webhook", {"url": receiver.url, "system": "standard", "secret": secret})
    sent = await quo_client.send_message(content="hello", from_=QUO_FROM, to=CUSTOMER)
    refused = await quo_client.send_message(content="hello", from_=QUO_FROM, to=UNDELIVERED_NUMBER)
    requests = await receiver.wait_for(2)
    events = {}
    for headers, body in requests:
        assert "openphone-signature" not in headers
        assert headers["webhook-signature"].startswith("v1,") and headers["webhook-id"]
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60  # seconds, not milliseconds
        event = Webhook(secret).verify(body, dict(headers))
        assert event["apiVersion"] == "2026-03-30" and "object" not in event["data"]
        events[event["type"]] = event["data"]
    assert set(events) == {"message.delivered", "message.failed"}
    assert events["message.delivered"]["resource"]["id"] == sent.id
    failed = events["message.failed"]
    assert failed["resource"]["id"] == refused.id and failed["resource"]["errorCode"]
    assert failed["context"]["phoneNumberId"] == QUO_PN_ID
    headers, body = requests[0]
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b"message", b"massage"), dict(headers))


async def test_phone_number_id_is_required_for_message_lookups(quo: Control, quo_client: QuoClient) -> None:
    """GET /messages takes the PN id: the E.164 form is a 400 (the real API refuses it too); the id is
    found with GET /phone-numbers."""
    [pn] = await quo_client.list_phone_numbers()
    assert pn.id == QUO_PN_ID and pn.number == QUO_FROM
    assert await quo_client.resolve_phone_number_id(QUO_FROM) == QUO_PN_ID
    with pytest.raises(ProviderPermanentError):
        await quo_client.resolve_phone_number_id("+15550100999")
    async with httpx.AsyncClient(base_url=quo.url, headers={"Authorization": QUO_API_KEY}) as raw:
        r = await raw.get("/v1/messages", params={"phoneNumberId": QUO_FROM, "participants": CUSTOMER})
        assert r.status_code == 400 and r.json()["errors"][0]["path"] == "/phoneNumberId"
    with pytest.raises(ValueError):
        await quo_client.list_messages(phone_number_id=QUO_FROM, participant=CUSTOMER)


async def test_list_pagination_reads_every_page_newest_first(quo: Control, quo_client: QuoClient) -> None:
    quo.limits(enabled=False)
    ids = [(await quo_client.send_message(content=f"m{i}", from_=QUO_FROM, to=CUSTOMER)).id for i in range(5)]
    found = await quo_client.list_messages(phone_number_id=QUO_PN_ID, participant=CUSTOMER, max_results=2)
    assert [m.id for m in found] == list(reversed(ids))  # 3 pages of maxResults=2, newest first


async def test_dated_api_version_is_a_setting(quo: Control) -> None:
    """The dated API generation needs Quo-Api-Version on unversioned paths; the client sends it when
    configured (ARREARS_QUO_API_VERSION), and speaks /v1 without it by default."""
    async with httpx.AsyncClient(base_url=quo.url, headers={"Authorization": QUO_API_KEY}) as raw:
        r = await raw.get("/phone-numbers")
        assert r.status_code == 400 and "Quo-Api-Version" in r.json()["message"]
        r = await raw.get("/phone-numbers", headers={"Quo-Api-Version": "2020-01-01"})
        assert r.status_code == 400
    async with QuoClient(api_key=QUO_API_KEY, base_url=quo.url, api_version="2026-03-30") as dated:
        sent = await dated.send_message(content="dated", from_=QUO_FROM, to=CUSTOMER)
        assert (await dated.get_message(sent.id)).text == "dated"
    async with QuoClient(api_key=QUO_API_KEY, base_url=quo.url) as unversioned:
        with pytest.raises(ProviderPermanentError):
            await unversioned.list_phone_numbers()
