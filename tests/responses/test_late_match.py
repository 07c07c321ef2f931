"""A reply that arrives before this service has read the message it answers (the dispatcher's `message-sent`
still behind a backlog of outcomes, found by `make bench-loop`) is stored unmatched, then matched and applied
when that message is read: a STOP becomes the opt-out it was, with its one confirmation. A reply from before
the message was sent stays unmatched (it answers nothing we sent). Real PostgreSQL, the responses schema
migrated, the service's functions called in their transactions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from arrears_responses.contacts.handlers import handle_message_sent
from arrears_responses.inbound.replies import record_inbound
from arrears_responses.settings import ResponsesSettings
from arrears_shared import topics
from arrears_shared.cloudevents import decode, encode
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.stream.transaction import transaction
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .test_sealed import number, outbox, sent, uid

S = "responses"
SETTINGS = ResponsesSettings()


@pytest.fixture(scope="module")
async def db(fresh_database_url: Callable[..., str]) -> AsyncIterator[AsyncEngine]:
    url = fresh_database_url("responses_late")
    await asyncio.to_thread(upgrade, url, "responses")
    engine = make_engine(url)
    yield engine
    await engine.dispose()


async def text_in(engine: AsyncEngine, sender: str, body: str, at: datetime) -> str:
    async with transaction(engine, S, S) as tx:
        ack = await record_inbound(
            tx,
            channel="sms",
            provider="quo",
            provider_message_id=f"AC{uuid.uuid4().hex}",
            from_address=sender,
            to_address="+14155550000",
            body=body,
            received_at=at,
            settings=SETTINGS,
        )
    return ack.status


async def read_sent(engine: AsyncEngine, *events: object) -> None:
    async with transaction(engine, S, S) as tx:
        envs = [decode(r.headers, r.value) for r in (encode(e, source="dispatcher-sms") for e in events)]  # type: ignore[arg-type]
        await handle_message_sent(envs, tx, SETTINGS)


async def test_a_stop_read_before_its_message_becomes_the_opt_out_it_was(db: AsyncEngine) -> None:
    account, phone = f"A-{uid()}", number()
    sent_at = datetime.now(UTC)
    # received a moment before our send was stamped (the provider had accepted it already)
    assert await text_in(db, phone, "STOP", sent_at - timedelta(seconds=2)) == "unmatched"
    assert await outbox(db, topics.REPLY_RECEIVED, account) == []
    await read_sent(db, sent(account, phone, f"n-{uid()}", at=sent_at))
    [ev] = await outbox(db, topics.REPLY_RECEIVED, account)
    assert (ev["intent"], ev["channel"]) == ("opt_out", "sms")
    notices = await outbox(db, topics.NOTICE_DUE, account)
    assert [n["purpose"] for n in notices] == ["opt_out_confirmation"]
    async with db.connect() as c:
        left = (
            await c.execute(
                text(f"SELECT count(*) FROM {S}.replies WHERE account_id IS NULL AND from_address = :p"),
                {"p": phone},
            )
        ).scalar_one()
    assert left == 0
    # the same message read again (a replay) matches nothing more
    await read_sent(db, sent(account, phone, f"n-{uid()}", at=sent_at))
    assert len(await outbox(db, topics.REPLY_RECEIVED, account)) == 1


async def test_a_reply_from_before_the_message_stays_unmatched(db: AsyncEngine) -> None:
    account, phone = f"A-{uid()}", number()
    assert await text_in(db, phone, "who is this?", datetime.now(UTC) - timedelta(minutes=5)) == "unmatched"
    # (a reply up to a minute before the stamp still answers it: the stamp follows the provider's acceptance)
    await read_sent(db, sent(account, phone, f"n-{uid()}", at=datetime.now(UTC)))
    assert await outbox(db, topics.REPLY_RECEIVED, account) == []


async def test_a_reply_arriving_while_its_message_is_being_indexed_waits_for_it(db: AsyncEngine) -> None:
    """The race chaos-loop found: the reply's lookup and the message's indexing in two transactions at once,
    each missing the other (the reply stored unmatched, the late match not seeing it yet). Both take the
    address's lock: the reply waits for the indexing and finds its account."""
    account, phone = f"A-{uid()}", number()
    ev = sent(account, phone, f"n-{uid()}", at=datetime.now(UTC))
    async with transaction(db, S, S) as tx:
        envs = [decode(r.headers, r.value) for r in [encode(ev, source="dispatcher-sms")]]
        await handle_message_sent(envs, tx, SETTINGS)
        reply = asyncio.ensure_future(text_in(db, phone, "STOP", datetime.now(UTC)))
        await asyncio.sleep(0.5)
        assert not reply.done(), "the reply did not wait for the indexing in progress"
    assert await reply == "processed"
    [ev_out] = await outbox(db, topics.REPLY_RECEIVED, account)
    assert ev_out["intent"] == "opt_out"
