"""Personal data at rest in the responses schema is sealed with the account's key (arrears_shared.vault):
addresses (contacts, sent messages, sent emails, automatic answers), matched replies' sender and text, the
corrections' text. Lookups by address go through blind indexes; rows written before sealing (migration
0009) are still found; an erased account is never matched, answered or published about. Real PostgreSQL (the
responses schema migrated), the service's functions called in their transactions."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from arrears_responses.contacts.handlers import handle_message_sent
from arrears_responses.contacts.lookup import address_index
from arrears_responses.corrections.service import correct, labelled_examples
from arrears_responses.gmail.parse import parse_email
from arrears_responses.gmail.service import record_email
from arrears_responses.inbound.failures import record_failure
from arrears_responses.inbound.replies import record_inbound
from arrears_responses.intents.retrain import corrections
from arrears_responses.settings import ResponsesSettings
from arrears_shared import topics
from arrears_shared.cloudevents import decode, encode
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import downgrade, upgrade
from arrears_shared.events import DeliveryStatus, Intent, MessageSent, Tier
from arrears_shared.inbound import DeliveryFailure
from arrears_shared.stream.transaction import transaction
from arrears_shared.vault.cipher import ERASED, is_sealed, open_value
from arrears_shared.vault.keys import vault
from arrears_shared.vault.subject_access import erase
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from vault_support import open_json, row_record

S = "responses"
SETTINGS = ResponsesSettings()


@pytest.fixture(scope="module")
async def db(fresh_database_url: Callable[..., str]) -> AsyncIterator[AsyncEngine]:
    url = fresh_database_url("responses_sealed")
    await asyncio.to_thread(upgrade, url, "responses")
    engine = make_engine(url)
    yield engine
    await engine.dispose()


def uid() -> str:
    return uuid.uuid4().hex[:8]


def number() -> str:
    return "+1415" + str(uuid.uuid4().int)[:7]


def sent(
    account: str, to: str, notice: str, *, channel: str = "sms", at: datetime | None = None, pmid: str = ""
) -> MessageSent:
    return MessageSent(
        account_id=account,
        notice_id=notice,
        channel=channel,
        status=DeliveryStatus.SENT,
        provider="gmail" if channel == "email" else "quo",
        provider_message_id=pmid or f"AC{uuid.uuid4().hex}",
        to=to,
        tier=Tier.FIRM,
        step=2,
        timezone="America/New_York",
        currency="USD",
        sent_at=at or datetime.now(UTC),
    )


async def index(engine: AsyncEngine, *events: MessageSent) -> None:
    async with transaction(engine, S, S) as tx:
        envs = []
        for ev in events:
            rec = encode(ev, source="dispatcher-sms")
            envs.append(decode(rec.headers, rec.value))
        await handle_message_sent(envs, tx)


async def reply(engine: AsyncEngine, sender: str, body: str, *, channel: str = "sms") -> Any:
    async with transaction(engine, S, S) as tx:
        return await record_inbound(
            tx,
            channel=channel,
            provider="quo",
            provider_message_id=f"AC{uuid.uuid4().hex}",
            from_address=sender,
            to_address="+14155550000",
            body=body,
            received_at=datetime.now(UTC),
            settings=SETTINGS,
        )


async def outbox(engine: AsyncEngine, topic: str, account: str) -> list[dict[str, Any]]:
    async with engine.connect() as c:
        rows = await c.execute(
            text(
                f"""SELECT headers, value FROM {S}.outbox
                WHERE topic = :t AND headers @> CAST(:h AS jsonb) ORDER BY id"""
            ),
            {"t": topic, "h": json.dumps([["ce_subject", account]])},
        )
        return await open_json(c, [row_record(r) for r in rows])


async def outbox_count(engine: AsyncEngine, topic: str, account: str) -> int:
    """How many events about `account` were written to `topic` (an erased account's cannot be opened)."""
    [(n,)] = await rows(
        engine,
        f"SELECT count(*) FROM {S}.outbox WHERE topic = :t AND headers @> CAST(:h AS jsonb)",
        t=topic,
        h=json.dumps([["ce_subject", account]]),
    )
    return int(n)


async def opened(engine: AsyncEngine, account: str, value: str | None) -> str | None:
    async with engine.connect() as c:
        keys = await vault().for_reading(c, [account])
    return open_value(keys.get(account), account, value)


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as c:
        return list((await c.execute(text(sql), params)).all())


async def erase_account(engine: AsyncEngine, account: str) -> None:
    async with engine.begin() as c:
        assert await erase(c, account, "test")


def assert_sealed(value: str | None, plaintext: str) -> None:
    assert value is not None and is_sealed(value), value
    assert plaintext not in value and plaintext.lower() not in value.lower()


async def test_addresses_are_sealed_and_a_reply_still_finds_its_account(db: AsyncEngine) -> None:
    account, to, notice, pmid = f"A-{uid()}", number(), f"n-{uid()}", f"AC{uid()}"
    await index(db, sent(account, to, notice, pmid=pmid))

    [contact] = await rows(
        db, f"SELECT address, address_bidx, account_id FROM {S}.contacts WHERE account_id = :a", a=account
    )
    assert_sealed(contact.address, to)
    assert await opened(db, account, contact.address) == to
    assert contact.address_bidx == address_index("sms", to)
    [sm] = await rows(db, f"SELECT address FROM {S}.sent_messages WHERE provider_message_id = :p", p=pmid)
    assert_sealed(sm.address, to)
    assert await opened(db, account, sm.address) == to

    # the customer writes from the number, formatted their own way: matched through the blind index
    sender = f"{to[:2]} ({to[2:5]}) {to[5:8]}-{to[8:]}"
    ack = await reply(db, sender, "I'll pay $50 on Friday")
    assert ack.status == "processed" and ack.intent == "promise_to_pay"
    [stored] = await rows(
        db, f"SELECT from_address, text, account_id FROM {S}.replies WHERE reply_id = :r", r=ack.reply_id
    )
    assert stored.account_id == account
    assert_sealed(stored.from_address, to)
    assert_sealed(stored.text, "I'll pay $50 on Friday")
    assert await opened(db, account, stored.text) == "I'll pay $50 on Friday"
    [ev] = await outbox(db, topics.REPLY_RECEIVED, account)
    assert (ev["from_address"], ev["text"], ev["in_reply_to_notice_id"]) == (
        to,
        "I'll pay $50 on Friday",
        notice,
    )

    # later sends to the number win (another account now): still one row, sealed with the new account's key
    other = f"B-{uid()}"
    await index(db, sent(other, to, f"n-{uid()}", at=datetime.now(UTC) + timedelta(seconds=5)))
    [row] = await rows(
        db,
        f"SELECT address, account_id FROM {S}.contacts WHERE channel = 'sms' AND address_bidx = :b",
        b=address_index("sms", to),
    )
    assert row.account_id == other and await opened(db, other, row.address) == to
    assert (await reply(db, to, "ok")).status == "processed"
    assert len(await outbox(db, topics.REPLY_RECEIVED, other)) == 1


async def test_an_unmatched_reply_is_kept_in_clear_for_a_person_to_match(db: AsyncEngine) -> None:
    stranger = number()
    ack = await reply(db, stranger, "who is this?")
    assert ack.status == "unmatched"
    [stored] = await rows(
        db, f"SELECT from_address, text, account_id FROM {S}.replies WHERE reply_id = :r", r=ack.reply_id
    )
    # no account, so no key to seal them with: shown as they are in GET /replies/unmatched
    assert (stored.from_address, stored.text, stored.account_id) == (stranger, "who is this?", None)


async def test_automatic_answers_store_the_address_sealed_and_are_still_given_once(db: AsyncEngine) -> None:
    account, to = f"A-{uid()}", number()
    await index(db, sent(account, to, f"n-{uid()}"))
    for body in ("HELP", "help", "STOP", "stop please"):
        assert (await reply(db, to, body)).status == "processed"
    notices = await outbox(db, topics.NOTICE_DUE, account)
    assert sorted(n["purpose"] for n in notices) == ["help", "opt_out_confirmation"]
    assert {n["to"] for n in notices} == {to}
    answers = await rows(
        db, f"SELECT purpose, address, address_bidx FROM {S}.auto_replies WHERE account_id = :a", a=account
    )
    assert len(answers) == 2
    for a in answers:
        assert_sealed(a.address, to)
        assert a.address_bidx == address_index("sms", to)
        assert await opened(db, account, a.address) == to


async def test_rows_written_before_sealing_are_still_found_then_sealed(
    fresh_database_url: Callable[..., str],
) -> None:
    """A schema at 0008 with plaintext rows, upgraded: the contact and the opt-out confirmation are found by
    their plaintext address, and the contact is replaced by a sealed row when a message is next sent there."""
    url = fresh_database_url("responses_legacy")
    await asyncio.to_thread(upgrade, url, "responses", "0008")
    account, to, old = f"L-{uid()}", number(), datetime.now(UTC) - timedelta(days=3)
    engine = make_engine(url)
    try:
        async with engine.begin() as c:
            await c.execute(
                text(
                    f"""INSERT INTO {S}.contacts (channel, address, account_id, notice_id, sent_at, timezone,
                        currency) VALUES ('sms', :ad, :a, 'n-old', :at, 'Europe/Madrid', 'EUR')"""
                ),
                {"ad": to, "a": account, "at": old},
            )
            await c.execute(
                text(
                    f"""INSERT INTO {S}.auto_replies (notice_id, reply_id, purpose, channel, address, account_id,
                        created_at) VALUES ('n-conf', 'r-old', 'opt_out_confirmation', 'sms', :ad, :a, :at)"""
                ),
                {"ad": to, "a": account, "at": old},
            )
        await asyncio.to_thread(upgrade, url, "responses")

        first = await reply(engine, to, "STOP")
        assert first.status == "processed"  # found by the plaintext address
        [ev] = await outbox(engine, topics.REPLY_RECEIVED, account)
        assert ev["in_reply_to_notice_id"] == "n-old"
        assert await outbox(engine, topics.NOTICE_DUE, account) == []  # confirmed before: not again

        fresh = sent(account, to, "n-new", at=datetime.now(UTC))
        await index(engine, fresh.model_copy(update={"timezone": None, "currency": None}))
        [row] = await rows(engine, f"SELECT * FROM {S}.contacts WHERE account_id = :a", a=account)
        assert_sealed(row.address, to)
        assert (row.notice_id, row.address_bidx) == ("n-new", address_index("sms", to))
        # the time zone and currency the old row knew are kept (the new event's would win)
        assert (row.timezone, row.currency) == ("Europe/Madrid", "EUR")
        assert (await reply(engine, to, "ok thanks")).status == "processed"
        assert [e["in_reply_to_notice_id"] for e in await outbox(engine, topics.REPLY_RECEIVED, account)] == [
            "n-old",
            "n-new",
        ]
        # and the migration goes down and up again
        await asyncio.to_thread(downgrade, url, "responses", "0008")
        await asyncio.to_thread(upgrade, url, "responses")
    finally:
        await engine.dispose()


async def test_an_erased_account_is_never_matched_answered_or_published_about(db: AsyncEngine) -> None:
    account, to, pmid = f"E-{uid()}", number(), f"AC{uid()}"
    await index(db, sent(account, to, f"n-{uid()}", pmid=pmid))
    assert (await reply(db, to, "HELP")).status == "processed"
    before = await rows(db, f"SELECT reply_id FROM {S}.replies WHERE account_id = :a", a=account)
    # a plaintext contact of the same account on another channel, written before sealing
    wa = number()
    async with db.begin() as c:
        await c.execute(
            text(
                f"""INSERT INTO {S}.contacts (channel, address, account_id, notice_id, sent_at)
                VALUES ('whatsapp', :ad, :a, 'n-wa', now())"""
            ),
            {"ad": wa, "a": account},
        )
    await erase_account(db, account)

    [contact] = await rows(
        db, f"SELECT address_bidx FROM {S}.contacts WHERE channel = 'sms' AND account_id = :a", a=account
    )
    assert contact.address_bidx is None  # erasure cleared the blind index
    for channel, addr in (("sms", to), ("whatsapp", wa)):
        ack = await reply(db, addr, "STOP", channel=channel)
        assert ack.status == "unmatched", channel  # an unknown address now
    assert await rows(db, f"SELECT reply_id FROM {S}.replies WHERE account_id = :a", a=account) == before
    # only what came before the erasure: the HELP reply and its answer
    assert await outbox_count(db, topics.REPLY_RECEIVED, account) == 1
    assert await outbox_count(db, topics.NOTICE_DUE, account) == 1

    # a message sent before the erasure fails now: nothing about the erased address is published
    failure = DeliveryFailure("sms", "quo", pmid, datetime.now(UTC), "quo 30003: unreachable", True)
    async with transaction(db, S, S) as tx:
        assert await record_failure(tx, failure) is False
    assert await outbox_count(db, topics.MESSAGE_SENT, account) == 0

    # a person corrects the erased account's earlier reply: kept as a decision, nothing published or sent
    [(reply_id,)] = before
    async with transaction(db, S, S) as tx:
        done = await correct(tx.conn, S, reply_id, Intent.OPT_OUT, "carla", datetime.now(UTC))
    assert done is not None and done[2].erased and done[2].text == ERASED and done[2].from_address == ERASED
    assert await outbox_count(db, topics.REPLY_RECEIVED, account) == 1
    async with db.connect() as c:
        assert not {"HELP", ERASED} & {t for t, _, _ in await corrections(c, S)}
        found, _ = await labelled_examples(c, S)
    [mine] = [e for e in found if e["reply_id"] == reply_id]
    assert mine["text"] == ERASED


async def test_a_failure_is_published_to_the_opened_address(db: AsyncEngine) -> None:
    account, to, pmid, notice = f"F-{uid()}", number(), f"AC{uid()}", f"n-{uid()}"
    await index(db, sent(account, to, notice, pmid=pmid))
    failure = DeliveryFailure("sms", "quo", pmid, datetime.now(UTC), "quo 30003: unreachable", True)
    async with transaction(db, S, S) as tx:
        assert await record_failure(tx, failure) is True
    [ev] = await outbox(db, topics.MESSAGE_SENT, account)
    assert (ev["to"], ev["notice_id"], ev["status"], ev["permanent"]) == (to, notice, "failed", True)


async def test_corrections_are_sealed_and_opened_for_training_and_review(db: AsyncEngine) -> None:
    account, to = f"C-{uid()}", number()
    await index(db, sent(account, to, f"n-{uid()}"))
    ack = await reply(db, to, "no es mi deuda, no voy a pagar")
    async with transaction(db, S, S) as tx:
        done = await correct(tx.conn, S, ack.reply_id, Intent.DISPUTE, "carla", datetime.now(UTC))
    assert done is not None and not done[2].erased and done[2].from_address == to
    [raw] = await rows(db, f"SELECT text FROM {S}.intent_corrections WHERE reply_id = :r", r=ack.reply_id)
    assert_sealed(raw.text, "no es mi deuda")
    async with db.connect() as c:
        examples = await corrections(c, S)
        found, _ = await labelled_examples(c, S)
    assert ("no es mi deuda, no voy a pagar", "sms", Intent.DISPUTE) in examples
    [mine] = [e for e in found if e["reply_id"] == ack.reply_id]
    assert mine["text"] == "no es mi deuda, no voy a pagar" and "account_id" not in mine


async def test_an_erased_accounts_email_is_matched_neither_by_reference_nor_thread_nor_address(
    db: AsyncEngine,
) -> None:
    from arrears_dispatcher_email.mime import message_id_for

    account, notice, addr, thread = f"G-{uid()}", f"n-{uid()}", f"g{uid()}@example.com", f"t-{uid()}"
    await index(db, sent(account, addr, notice, channel="email").model_copy(update={"thread_id": thread}))
    [raw] = await rows(db, f"SELECT address FROM {S}.email_sent WHERE notice_id = :n", n=notice)
    assert_sealed(raw.address, addr)

    def answer() -> Any:
        mime = EmailMessage()
        mime["From"], mime["Subject"] = addr.upper(), "Re: your balance"
        mime["In-Reply-To"] = message_id_for(notice, "collections@arrears.test")
        mime.set_content("STOP")
        return parse_email(mime.as_bytes())

    async with transaction(db, S, S) as tx:
        assert await record_email(tx, answer(), gmail_id=uid(), thread_id=thread) == "reply"
    await erase_account(db, account)
    async with transaction(db, S, S) as tx:
        assert await record_email(tx, answer(), gmail_id=uid(), thread_id=thread) == "unmatched"
    assert await outbox_count(db, topics.REPLY_RECEIVED, account) == 1  # the one before the erasure


async def test_two_spellings_of_one_number_in_a_batch_are_one_contact(db: AsyncEngine) -> None:
    """The blind index normalises a number further than the contact address does: one row, the latest send."""
    account, to = f"N-{uid()}", number()
    now = datetime.now(UTC)
    await index(
        db, sent(account, to, "n-first", at=now), sent(account, to[1:], "n-second", at=now + timedelta(1))
    )
    [row] = await rows(db, f"SELECT notice_id FROM {S}.contacts WHERE account_id = :a", a=account)
    assert row.notice_id == "n-second"
