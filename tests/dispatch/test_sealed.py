"""Personal data of the delivery tables is sealed at rest with the account's key (arrears_shared.delivery.sealing):
addresses, the personal fields of stored notices, rendered messages and invalid addresses are ciphertext in the
database, yet everything is sent in clear, invalid addresses are still found (by their blind index, or by the
address for rows written before sealing), and nothing is ever sent to an erased account."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from email import message_from_bytes, policy
from typing import Any

import pytest
from arrears_dispatcher_email.__main__ import build_engine as build_email
from arrears_dispatcher_email.settings import EmailSettings
from arrears_shared.db.migrate import upgrade
from arrears_shared.delivery import DeliveryEngine, allow_all
from arrears_shared.events import DeliveryStatus, MessageSent, NoticeDue, utcnow
from arrears_shared.stream.transaction import transaction
from arrears_shared.vault import cipher
from arrears_shared.vault.keys import vault
from arrears_shared.vault.subject_access import erase
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from vault_support import opened_json

from .helpers import (
    SENDER,
    bound,
    control,
    drain,
    emulator_stats,
    envelope,
    feed,
    ledger,
    message_sent_events,
    notice,
    states,
)
from .test_engine import SCHEMA

EMAIL_SCHEMA = "dispatcher_email"
NAME = "Zelda Quixote-Marlowe"


def _json(v: Any) -> Any:
    return json.loads(v) if isinstance(v, str | bytes) else v


async def _raw(engine: AsyncEngine, schema: str, notice_id: str) -> Any:
    async with engine.connect() as c:
        return (
            await c.execute(
                text(f"SELECT to_address, payload, rendered FROM {schema}.deliveries WHERE notice_id = :n"),
                {"n": notice_id},
            )
        ).one()


async def _erase(engine: AsyncEngine, account_id: str) -> None:
    async with engine.begin() as conn:
        await erase(conn, account_id, "test")


async def _insert_plaintext(engine: AsyncEngine, n: NoticeDue) -> None:
    """A delivery as a release before sealing wrote it: address and notice in clear."""
    async with engine.begin() as c:
        await c.execute(
            text(
                f"INSERT INTO {SCHEMA}.deliveries (notice_id, account_id, channel, to_address, payload, priority,"
                " next_attempt_at) VALUES (:n, :a, :c, :t, CAST(:p AS jsonb), 0, now())"
            ),
            {"n": n.notice_id, "a": n.account_id, "c": n.channel, "t": n.to, "p": n.model_dump_json()},
        )


def _opened_events(url: str, rows: list[Any]) -> dict[str, dict[str, Any]]:
    return {e["notice_id"]: e for e in (opened_json(url, r.headers, r.value) for r in rows)}


async def _sent_rows(engine: AsyncEngine, schema: str) -> list[Any]:
    async with engine.connect() as c:
        return list(
            await c.execute(
                text(f"SELECT headers, value FROM {schema}.outbox WHERE topic = 'message-sent' ORDER BY id")
            )
        )


# -- sealed at rest, sent in clear ---------------------------------------------------------------------------
async def test_addresses_notices_and_messages_are_sealed_at_rest_and_sent_in_clear(
    quo: Any, make: Callable[..., DeliveryEngine], db: str
) -> None:
    eng = make()
    n = notice(customer_name=NAME).model_copy(
        update={"fallback_channels": ["email"], "fallback_to": {"email": "zelda.q@example.com"}}
    )
    await feed(eng, [n], SCHEMA)
    await drain(eng)

    [sent] = ledger(quo.url)["entries"]
    assert sent["recipient"] == n.to and "Zelda" in sent["content"]  # the provider got the plaintext
    raw = await _raw(eng.engine, SCHEMA, n.notice_id)
    payload, rendered = _json(raw.payload), _json(raw.rendered)
    stored = f"{raw.to_address} {json.dumps(payload)} {json.dumps(rendered)}"
    for plain in (n.to, "Zelda", "Quixote", "zelda.q@example.com", sent["content"]):
        assert plain not in stored
    assert cipher.is_sealed(raw.to_address)
    assert all(cipher.is_sealed(payload[k]) for k in ("to", "customer_name"))
    assert cipher.is_sealed(payload["fallback_to"]["email"])
    assert cipher.is_sealed(rendered["content"])
    # what is not personal stays readable
    assert payload["notice_id"] == n.notice_id and payload["balance_minor"] == n.balance_minor
    assert isinstance(rendered["encoding"], str) and not cipher.is_sealed(rendered["encoding"])

    # ... and opens with the account's key to exactly what was sent
    async with eng.engine.connect() as c:
        aead = (await vault().for_reading(c, [n.account_id]))[n.account_id]
    assert cipher.open_value(aead, n.account_id, raw.to_address) == n.to
    assert cipher.open_value(aead, n.account_id, rendered["content"]) == sent["content"]
    opened = cipher.open_fields(aead, n.account_id, payload, NoticeDue.personal)
    assert NoticeDue.model_validate(opened) == n
    assert (await states(eng.engine, SCHEMA))[n.notice_id]["state"] == "sent"
    assert _opened_events(db, await _sent_rows(eng.engine, SCHEMA))[n.notice_id]["to"] == n.to


async def test_rows_written_before_sealing_are_still_sent(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make()
    n = notice(customer_name=NAME)
    await _insert_plaintext(eng.engine, n)
    await drain(eng)
    [sent] = ledger(quo.url)["entries"]
    assert sent["recipient"] == n.to and "Zelda" in sent["content"]
    assert (await states(eng.engine, SCHEMA))[n.notice_id]["state"] == "sent"
    raw = await _raw(eng.engine, SCHEMA, n.notice_id)
    assert cipher.is_sealed(_json(raw.rendered)["content"])  # what it writes now is sealed


# -- invalid addresses ---------------------------------------------------------------------------------------
async def test_invalid_addresses_are_sealed_and_found_by_their_blind_index(
    quo: Any, make: Callable[..., DeliveryEngine], db: str
) -> None:
    bad = "+15550004391"
    control(quo.url, "PUT", "numbers", {"invalid": [bad]})
    eng = make()
    first = notice(to=bad)
    await feed(eng, [first], SCHEMA)
    await drain(eng)
    async with eng.engine.connect() as c:
        [row] = (
            await c.execute(text(f"SELECT account_id, address, address_bidx FROM {SCHEMA}.invalid_channels"))
        ).all()
        aead = (await vault().for_reading(c, [first.account_id]))[first.account_id]
    assert cipher.is_sealed(row.address) and bad not in row.address
    assert cipher.open_value(aead, first.account_id, row.address) == bad
    assert row.address_bidx == vault().exact_index("sms", bad)

    # a later notice to the same address fails at once; another address of the account is sent
    later = notice(to=bad, account_id=first.account_id).model_copy(update={"notice_id": "later-bad"})
    other = notice(account_id=first.account_id).model_copy(update={"notice_id": "later-other"})
    await feed(eng, [later, other], SCHEMA)
    await drain(eng)
    assert emulator_stats(quo.url)["by_operation"].get("send") == 2  # the first one and `other`
    st = await states(eng.engine, SCHEMA)
    assert st["later-bad"]["state"] == "failed" and st["later-bad"]["last_error"].startswith(
        "channel_invalid:"
    )
    assert st["later-other"]["state"] == "sent"

    # a hard bounce reported later (by responses) again: one row per address, not one per report
    ev = _opened_events(db, await _sent_rows(eng.engine, SCHEMA))["later-other"]
    bounce = MessageSent.model_validate({**ev, "status": "failed", "permanent": True, "reason": "bounced"})
    for _ in range(2):
        await feed_envelopes(eng, [envelope(bounce, source="responses")])
    async with eng.engine.connect() as c:
        rows = (await c.execute(text(f"SELECT address, address_bidx FROM {SCHEMA}.invalid_channels"))).all()
    assert len(rows) == 2 and all(cipher.is_sealed(r.address) and r.address_bidx for r in rows)
    assert other.to not in json.dumps([r.address for r in rows])


async def feed_envelopes(eng: DeliveryEngine, envs: list[Any]) -> None:
    async with transaction(eng.engine, SCHEMA, "test") as tx:
        await eng.handle_batch(envs, tx)


async def test_invalid_addresses_recorded_before_sealing_still_match(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make()
    n = notice()
    async with eng.engine.begin() as c:
        await c.execute(
            text(
                f"INSERT INTO {SCHEMA}.invalid_channels (account_id, channel, address, reason)"
                " VALUES (:a, 'sms', :t, 'legacy bounce')"
            ),
            {"a": n.account_id, "t": n.to},
        )
    elsewhere = notice(account_id=n.account_id).model_copy(update={"notice_id": "elsewhere"})
    await feed(eng, [n, elsewhere], SCHEMA)
    await drain(eng)
    st = await states(eng.engine, SCHEMA)
    assert st[n.notice_id]["state"] == "failed"
    assert st[n.notice_id]["last_error"] == "channel_invalid: legacy bounce"
    assert st["elsewhere"]["state"] == "sent"
    assert [e["recipient"] for e in ledger(quo.url)["entries"]] == [elsewhere.to]


# -- erasure -------------------------------------------------------------------------------------------------
async def test_nothing_is_ever_sent_to_an_erased_account(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make()
    live = notice()
    gone = notice(customer_name=NAME)
    # a row written before sealing (plaintext) of an account erased later: its key is gone, so is its row
    legacy = notice()
    await _insert_plaintext(eng.engine, legacy)
    await feed(eng, [live, gone], SCHEMA)
    await _erase(eng.engine, gone.account_id)
    await _erase(eng.engine, legacy.account_id)
    # a notice that arrives after the erasure (sealed with a key nobody holds), and an answer to a reply
    after = notice(account_id=gone.account_id).model_copy(update={"notice_id": "after-erasure"})
    answer = notice(account_id=gone.account_id).model_copy(
        update={
            "notice_id": "help-after-erasure",
            "purpose": "help",
            "text": "Reply PAY.",
            "due_at": utcnow(),
        }
    )
    await feed(eng, [after, answer], SCHEMA)
    await drain(eng)

    assert [e["recipient"] for e in ledger(quo.url)["entries"]] == [live.to]
    assert emulator_stats(quo.url)["by_operation"].get("send") == 1
    st = await states(eng.engine, SCHEMA)
    assert st[live.notice_id]["state"] == "sent"
    for nid in (gone.notice_id, "after-erasure", "help-after-erasure", legacy.notice_id):
        assert st[nid]["state"] == "suppressed" and st[nid]["last_error"] == "erased", (nid, st[nid])
        assert st[nid]["attempts"] == 0
    events = {e["notice_id"]: e for e in await message_sent_events(eng.engine, SCHEMA)}
    assert events[gone.notice_id]["status"] == DeliveryStatus.SUPPRESSED
    assert events[gone.notice_id]["reason"] == "erased"
    raw = await _raw(eng.engine, SCHEMA, "after-erasure")
    assert cipher.is_sealed(raw.to_address) and after.to not in raw.to_address

    # a later verdict on its address records nothing: no blind index of an erased person is written again
    bounce = MessageSent(
        account_id=gone.account_id,
        notice_id=gone.notice_id,
        channel="sms",
        status=DeliveryStatus.FAILED,
        provider="quo",
        to=gone.to,
        tier=gone.tier,
        step=1,
        permanent=True,
        reason="bounced",
        attempts=1,
        sent_at=utcnow(),
        timezone=None,
        currency="USD",
    )
    await feed_envelopes(eng, [envelope(bounce, source="responses")])
    async with eng.engine.connect() as c:
        assert (await c.execute(text(f"SELECT count(*) FROM {SCHEMA}.invalid_channels"))).scalar_one() == 0


async def test_an_in_doubt_send_of_an_erased_account_is_settled_not_resent(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    n = notice()
    control(quo.url, "POST", "faults", {"accept_then_drop": {"next": 1, "operations": ["send"]}})
    eng = make()
    await feed(eng, [n], SCHEMA)
    await drain(eng)
    assert (await states(eng.engine, SCHEMA))[n.notice_id]["state"] == "sending"
    await _erase(eng.engine, n.account_id)
    await asyncio.sleep(1.2)
    assert await eng.reconcile_in_doubt() == 1
    await drain(eng)
    st = (await states(eng.engine, SCHEMA))[n.notice_id]
    assert st["state"] == "suppressed" and st["last_error"].startswith("erased")
    stats = emulator_stats(quo.url)["by_operation"]
    assert stats.get("send") == 1  # the one accepted before the erasure; never resent
    assert not stats.get("list")  # nor looked up by an address that is gone


# -- email: the raw MIME is sealed, the thread id is not -----------------------------------------------------
@pytest.fixture
async def email_engine(gmail: Any, fresh_database_url: Callable[..., str]) -> AsyncIterator[DeliveryEngine]:
    db = fresh_database_url("dispatch_email_sealed")
    await asyncio.to_thread(upgrade, db, "dispatcher-email")
    settings = EmailSettings(
        service_name="dispatcher-email",
        database_url=db,
        gmail_api_endpoint=gmail.url,
        gmail_token="emulator-token",
        gmail_sender=SENDER,
        gmail_timeout_s=3.0,
        gmail_rate_per_s=50.0,
        dispatch_idle_poll_s=0.05,
    )
    eng, ae = bound(build_email(settings, gate=allow_all), db, EMAIL_SCHEMA, "dispatcher-email")
    try:
        yield eng
    finally:
        await eng.channel.aclose()  # type: ignore[attr-defined]
        await ae.dispose()


async def test_email_is_stored_sealed_and_threads_by_the_readable_thread_id(
    gmail: Any, email_engine: DeliveryEngine
) -> None:
    eng = email_engine
    first = notice(channel="email", customer_name=NAME)
    await feed(eng, [first], EMAIL_SCHEMA)
    await drain(eng)
    second = notice(channel="email", to=first.to, account_id=first.account_id, customer_name=NAME)
    second = second.model_copy(update={"notice_id": f"second-{uuid.uuid4().hex[:6]}"})
    await feed(eng, [second], EMAIL_SCHEMA)
    await drain(eng)

    assert ledger(gmail.url)["count"] == 2
    async with eng.engine.connect() as c:
        thread_id = (
            await c.execute(
                text(f"SELECT thread_id FROM {EMAIL_SCHEMA}.deliveries WHERE notice_id = :n"),
                {"n": first.notice_id},
            )
        ).scalar_one()
        aead = (await vault().for_reading(c, [first.account_id]))[first.account_id]
    raw = await _raw(eng.engine, EMAIL_SCHEMA, second.notice_id)
    rendered = _json(raw.rendered)
    assert thread_id and rendered["thread_id"] == thread_id  # not personal: readable
    assert cipher.is_sealed(rendered["raw"]) and cipher.is_sealed(raw.to_address)
    mime = base64.b64encode(f"{first.to}".encode()).decode()
    for plain in (first.to, "Zelda", mime):
        assert plain not in json.dumps(rendered) and plain not in raw.to_address
    msg = message_from_bytes(
        base64.b64decode(cipher.open_value(aead, first.account_id, rendered["raw"]) or ""),
        policy=policy.default,
    )
    assert first.to in str(msg["To"]) and "Zelda" in str(msg["To"])
    assert (await states(eng.engine, EMAIL_SCHEMA))[second.notice_id]["state"] == "sent"
