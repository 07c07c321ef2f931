"""responses with a pool of sending mailboxes: replies are read from every mailbox (its own cursor and watch),
each matched to the account the mailbox wrote to, and one failing mailbox does not stop the others being read.
The emails are sent by dispatcher-email's pool through the real Gmail client against the emulator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from arrears_dispatcher_email.__main__ import build_engine
from arrears_dispatcher_email.settings import EmailSettings
from arrears_emulators.common import EmulatorServer, LimitsConfig
from arrears_emulators.gmail.app import GmailConfig
from arrears_emulators.gmail.app import create_app as create_gmail
from arrears_responses.contacts.handlers import handle_message_sent
from arrears_responses.gmail.mailboxes import close_all, reading_mailboxes
from arrears_responses.gmail.poller import make_gmail_loop, poll_once
from arrears_responses.gmail.watch import renew_watch_once
from arrears_responses.settings import ResponsesSettings
from arrears_shared.cloudevents import decode, encode
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.delivery import DeliveryEngine, allow_all
from arrears_shared.events import MessageSent
from arrears_shared.stream.transaction import transaction
from dispatch.helpers import feed, ledger, notice
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from vault_support import open_json, row_record

A, B = "a.collections@arrears.test", "b.collections@arrears.test"
POOL = [{"address": A}, {"address": B}]


@pytest.fixture
def gmail() -> Any:
    with EmulatorServer(
        create_gmail(GmailConfig(user_email=A, limits=LimitsConfig(rate=100_000, daily_limit=2000)))
    ) as srv:
        yield srv


@pytest.fixture
async def db(fresh_database_url: Callable[..., str]) -> AsyncIterator[tuple[str, AsyncEngine]]:
    url = fresh_database_url("gmail_pool")
    await asyncio.to_thread(upgrade, url, "dispatcher-email")
    await asyncio.to_thread(upgrade, url, "responses")
    engine = make_engine(url)
    yield url, engine
    await engine.dispose()


@pytest.fixture
async def dispatcher(gmail: Any, db: tuple[str, AsyncEngine]) -> AsyncIterator[DeliveryEngine]:
    url, engine = db
    s = EmailSettings(
        service_name="dispatcher-email",
        database_url=url,
        gmail_api_endpoint=gmail.url,
        gmail_token="emulator-token",
        gmail_mailboxes=[{**m, "rate_per_s": 50.0} for m in POOL],
    )
    eng = build_engine(s, gate=allow_all).bind(engine, "dispatcher_email", "dispatcher-email")
    yield eng
    await eng.channel.aclose()  # type: ignore[attr-defined]


def settings(gmail_url: str, **kw: Any) -> ResponsesSettings:
    return ResponsesSettings(
        gmail_api_endpoint=gmail_url,
        gmail_token="t",
        gmail_mailboxes=POOL,
        responses_gmail_enabled=True,
        **kw,
    )


def emulator(gmail_url: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    r = httpx.request(method, f"{gmail_url}/_emulator/{path}", json=body, timeout=10)
    r.raise_for_status()
    return r.json()


async def send_one_per_mailbox(dispatcher: DeliveryEngine, gmail_url: str) -> dict[str, dict[str, Any]]:
    """Two new accounts, one written from each mailbox; returns mailbox -> its ledger entry."""
    for _ in range(2):
        n = notice(channel="email")
        await feed(dispatcher, [n], "dispatcher_email")
        while await dispatcher.process_one():
            pass
    entries = {e["details"]["mailbox"]: e for e in ledger(gmail_url)["entries"]}
    assert set(entries) == {A, B}
    return entries


async def index_what_was_sent(engine: AsyncEngine) -> None:
    """The dispatcher's message-sent events, as responses consumes them (its contacts index)."""
    async with engine.connect() as c:
        rows = await c.execute(
            text(
                "SELECT headers, value FROM dispatcher_email.outbox WHERE topic = 'message-sent' ORDER BY id"
            )
        )
        sent = [MessageSent.model_validate(d) for d in await open_json(c, [row_record(r) for r in rows])]
    async with transaction(engine, "responses", "responses") as tx:
        envs = []
        for ev in sent:
            rec = encode(ev, source="dispatcher-email")
            envs.append(decode(rec.headers, rec.value))
        await handle_message_sent(envs, tx)


def reply_to(gmail_url: str, entry: dict[str, Any], body: str, *, threaded: bool = True) -> None:
    """The customer answers the email in `entry`: it arrives in the mailbox that wrote."""
    d = entry["details"]
    emulator(
        gmail_url,
        "POST",
        "inbound",
        {
            "from": entry["recipient"],
            "to": d["mailbox"],
            "mailbox": d["mailbox"],
            "subject": f"Re: {d['subject']}",
            "body": body,
            **({"in_reply_to": f"<{d['message_id']}>"} if threaded else {}),
        },
    )


async def replies(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with engine.connect() as c:
        rows = await c.execute(
            text("SELECT reply_id, account_id, to_address, matched_by FROM responses.replies")
        )
        return {r.reply_id: dict(r._mapping) for r in rows}


async def accounts_by_recipient(engine: AsyncEngine, entries: dict[str, dict[str, Any]]) -> dict[str, str]:
    """mailbox -> the account it wrote to (from the dispatcher's own record)."""
    async with engine.connect() as c:
        rows = await c.execute(text("SELECT account_id, mailbox FROM dispatcher_email.mailbox_assignments"))
        return {r.mailbox: r.account_id for r in rows}


async def test_replies_to_every_mailbox_are_read_and_matched_to_the_account(
    gmail: Any, db: tuple[str, AsyncEngine], dispatcher: DeliveryEngine
) -> None:
    _, engine = db
    s = settings(gmail.url)
    boxes = reading_mailboxes(s)
    try:
        assert [b.address for b in boxes] == [A, B]

        async def poll_all() -> dict[str, dict[str, int]]:
            out = {}
            for box in boxes:
                async with transaction(engine, "responses", "responses") as tx:
                    out[box.address] = (await poll_once(tx, box.client, s, box.address)).outcomes
            return out

        await poll_all()  # each mailbox's cursor starts at "now"
        entries = await send_one_per_mailbox(dispatcher, gmail.url)
        await index_what_was_sent(engine)
        wrote_to = await accounts_by_recipient(engine, entries)
        reply_to(gmail.url, entries[A], "I will pay on Friday")
        reply_to(gmail.url, entries[B], "Please call me tomorrow", threaded=False)  # matched by sender only
        outcomes = await poll_all()
        # our own sends (label SENT) are skipped; each mailbox's reply is read from that mailbox
        assert outcomes[A].get("reply") == 1 and outcomes[B].get("reply") == 1, outcomes
        got = {r["to_address"]: r for r in (await replies(engine)).values()}
        assert set(got) == {A, B}
        assert got[A]["account_id"] == wrote_to[A] and got[A]["matched_by"] == "references"
        assert got[B]["account_id"] == wrote_to[B] and got[B]["matched_by"] == "address"
        async with engine.connect() as c:
            cursors = {r.mailbox for r in await c.execute(text("SELECT mailbox FROM responses.gmail_cursor"))}
            events = (
                await c.execute(text("SELECT count(*) FROM responses.outbox WHERE topic = 'reply-received'"))
            ).scalar_one()
        assert cursors == {A, B} and events == 2
        assert await poll_all() == {A: {}, B: {}}, "a second poll reads nothing again"
    finally:
        close_all(boxes)


async def test_each_mailbox_has_its_own_watch(gmail: Any, db: tuple[str, AsyncEngine]) -> None:
    _, engine = db
    s = settings(gmail.url, responses_gmail_watch_topic="projects/arrears/topics/gmail")
    boxes = reading_mailboxes(s)
    try:
        for box in boxes:
            async with transaction(engine, "responses", "responses") as tx:
                assert await renew_watch_once(tx, box.client, s, box.address)
        async with engine.connect() as c:
            rows = {r.mailbox: r for r in await c.execute(text("SELECT * FROM responses.gmail_watch"))}
        assert set(rows) == {A, B} and all(r.renewals == 1 for r in rows.values())
        assert emulator(gmail.url, "GET", "stats")["extra"]["watch_calls"] == 2
    finally:
        close_all(boxes)


async def test_one_failing_mailbox_does_not_stop_the_others_being_read(
    gmail: Any, db: tuple[str, AsyncEngine], dispatcher: DeliveryEngine
) -> None:
    _, engine = db
    s = settings(gmail.url, responses_gmail_poll_s=0.2)
    stopping = asyncio.Event()
    ctx = SimpleNamespace(
        settings=s,
        stopping=stopping,
        transaction=lambda: transaction(engine, "responses", "responses"),
    )
    loop = asyncio.create_task(make_gmail_loop(asyncio.Event())(ctx))  # type: ignore[arg-type]
    try:

        async def cursors() -> set[str]:
            async with engine.connect() as c:
                return {
                    r.mailbox for r in await c.execute(text("SELECT mailbox FROM responses.gmail_cursor"))
                }

        async def until(check: Callable[[], Any], timeout_s: float = 15.0) -> None:
            deadline = asyncio.get_running_loop().time() + timeout_s
            while not await check():
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.1)

        async def both_started() -> bool:
            return await cursors() == {A, B}

        await until(both_started)
        entries = await send_one_per_mailbox(dispatcher, gmail.url)
        await index_what_was_sent(engine)
        # a's credentials are refused for a while: its polls fail, b is read all the same
        emulator(
            gmail.url,
            "POST",
            f"mailboxes/{A}/faults",
            {
                "status": 401,
                "reason": "authError",
                "message": "Invalid Credentials",
                "next": 3,
                "operations": None,
            },
        )
        reply_to(gmail.url, entries[A], "paid it yesterday")
        reply_to(gmail.url, entries[B], "I dispute this debt")

        async def read_from(mailbox: str) -> bool:
            return any(r["to_address"] == mailbox for r in (await replies(engine)).values())

        await until(lambda: read_from(B))
        assert emulator(gmail.url, "GET", "mailboxes")[A]["faults"], "a was not yet asked again"
        assert not await read_from(A)
        await until(lambda: read_from(A), timeout_s=30.0)  # a, backing off alone, is read once it works
    finally:
        stopping.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(loop, 10)
