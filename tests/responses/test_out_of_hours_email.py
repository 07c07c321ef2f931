"""Out-of-hours acknowledgements of email replies, along the whole normal path: dispatcher-email's pool
sends a notice through the real Gmail client to the emulator, the customer answers it, responses reads the
answer from that mailbox (history polling) and, in the same transaction, writes the acknowledgement's
`notice-due`; dispatcher-email sends it as a plain-text, auto-replied email threaded under the customer's
message, from the account's sticky mailbox. Counted at the emulator's ledger: exactly one per closed period,
none in hours, none to automatic or list mail, none on a replay."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from arrears_dispatcher_email.__main__ import build_engine
from arrears_dispatcher_email.settings import EmailSettings
from arrears_emulators.common import EmulatorServer, LimitsConfig
from arrears_emulators.gmail.app import GmailConfig
from arrears_emulators.gmail.app import create_app as create_gmail
from arrears_responses.autoreplies.calendars import apply_calendar
from arrears_responses.autoreplies.out_of_hours import no_ack_sender
from arrears_responses.gmail.mailboxes import ReadMailbox, close_all, reading_mailboxes
from arrears_responses.gmail.poller import poll_once
from arrears_responses.settings import ResponsesSettings
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.delivery import DeliveryEngine, allow_all
from arrears_shared.events import NoticeDue, TeamCalendarChanged
from arrears_shared.stream.transaction import transaction
from dispatch.helpers import feed, ledger, notice
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from vault_support import open_json, row_record

from .test_gmail_pool import emulator, index_what_was_sent
from .test_out_of_hours import closed_now, open_now

A, B = "a.collections@arrears.test", "b.collections@arrears.test"
POOL = [{"address": A}, {"address": B}]
TEAM = "ooh-email"
DISPATCHER = "dispatcher_email"


@pytest.fixture
def gmail() -> Any:
    with EmulatorServer(
        create_gmail(GmailConfig(user_email=A, limits=LimitsConfig(rate=100_000, daily_limit=2000)))
    ) as srv:
        yield srv


@pytest.fixture
async def db(fresh_database_url: Callable[..., str]) -> AsyncIterator[tuple[str, AsyncEngine]]:
    url = fresh_database_url("ooh_email")
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
        brand_name="Acme",
    )
    eng = build_engine(s, gate=allow_all).bind(engine, DISPATCHER, "dispatcher-email")
    yield eng
    await eng.channel.aclose()  # type: ignore[attr-defined]


@pytest.fixture
def settings(gmail: Any) -> ResponsesSettings:
    return ResponsesSettings(
        gmail_api_endpoint=gmail.url,
        gmail_token="t",
        gmail_mailboxes=POOL,
        responses_gmail_enabled=True,
        responses_out_of_hours_ack=True,
        responses_out_of_hours_team=TEAM,
        responses_brand_name="Acme",
    )


@pytest.fixture
async def boxes(settings: ResponsesSettings) -> AsyncIterator[list[ReadMailbox]]:
    found = reading_mailboxes(settings)
    yield found
    close_all(found)


class Loop:
    """The three parties of the test: dispatcher-email, the customer (the emulator) and responses."""

    def __init__(
        self, gmail: Any, engine: AsyncEngine, dispatcher: DeliveryEngine, s: ResponsesSettings, boxes: Any
    ) -> None:
        self.gmail, self.engine, self.dispatcher, self.s, self.boxes = gmail, engine, dispatcher, s, boxes
        self.version = 0

    async def calendar(self, cal: dict[str, Any]) -> None:
        """The team's calendar as escalation publishes it on `team-calendars`."""
        self.version += 1
        ev = TeamCalendarChanged(
            account_id=f"team:{TEAM}", team=TEAM, version=self.version, changed_at=datetime.now(UTC), **cal
        )
        async with transaction(self.engine, "responses", "responses") as tx:
            assert await apply_calendar(tx, ev)

    async def send(self, n: NoticeDue) -> None:
        await feed(self.dispatcher, [n], DISPATCHER)
        while await self.dispatcher.process_one():
            pass

    async def poll(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for box in self.boxes:
            async with transaction(self.engine, "responses", "responses") as tx:
                for k, v in (await poll_once(tx, box.client, self.s, box.address)).outcomes.items():
                    total[k] = total.get(k, 0) + v
        return total

    async def customer_with_a_notice(self) -> tuple[str, dict[str, Any]]:
        """A new account written to by the pool; returns it and the ledger entry of its notice."""
        n = notice(channel="email")
        await self.send(n)
        await index_what_was_sent(self.engine)
        return n.account_id, ledger(self.gmail.url, notice_id=n.notice_id)["entries"][0]

    def reply(
        self,
        entry: dict[str, Any],
        body: str,
        headers: dict[str, str] | None = None,
        message_id: str | None = None,
    ) -> str:
        """The customer answers the email in `entry` (it lands in the mailbox that wrote). Its Message-ID."""
        d = entry["details"]
        message_id = message_id or f"<ooh-{uuid.uuid4().hex}@example.com>"
        emulator(
            self.gmail.url,
            "POST",
            "inbound",
            {
                "from": entry["recipient"],
                "to": d["mailbox"],
                "mailbox": d["mailbox"],
                "subject": f"Re: {d['subject']}",
                "body": body,
                "message_id": message_id,
                "in_reply_to": f"<{d['message_id']}>",
                "headers": headers or {},
            },
        )
        return message_id

    async def acks(self, account: str) -> list[NoticeDue]:
        """The acknowledgements responses wrote to its outbox for `account` (personal fields opened)."""
        async with self.engine.connect() as c:
            rows = await c.execute(
                text("SELECT headers, value FROM responses.outbox WHERE topic = 'notice-due' ORDER BY id")
            )
            found = [NoticeDue.model_validate(d) for d in await open_json(c, [row_record(r) for r in rows])]
        return [n for n in found if n.account_id == account and n.purpose == "out_of_hours_ack"]

    async def sent_message(self, entry: dict[str, Any]) -> EmailMessage:
        """The email as the sending mailbox holds it (`users.messages.get?format=raw`)."""
        box = next(b for b in self.boxes if b.address == entry["details"]["mailbox"])
        raw = (await box.client.get_message(entry["provider_id"], format="raw")).raw
        assert raw is not None
        msg = message_from_bytes(raw, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@pytest.fixture
def loop(
    gmail: Any, db: tuple[str, AsyncEngine], dispatcher: DeliveryEngine, settings: Any, boxes: Any
) -> Loop:
    return Loop(gmail, db[1], dispatcher, settings, boxes)


def ack_entries(gmail_url: str, ack: NoticeDue) -> list[dict[str, Any]]:
    return list(ledger(gmail_url, notice_id=ack.notice_id)["entries"])


async def test_out_of_hours_reply_gets_one_threaded_auto_replied_email_from_its_mailbox(loop: Loop) -> None:
    await loop.poll()  # each mailbox's cursor starts at "now"
    await loop.calendar(closed_now())
    account, entry = await loop.customer_with_a_notice()
    assert entry["details"]["mailbox"] == A  # a new account goes to the least used mailbox (a tie: A)
    # two other accounts: B then A again. A has now sent more than B: a fresh pick would be B
    for _ in range(2):
        await loop.customer_with_a_notice()
    customer_msgid = loop.reply(entry, "Can you call me about my balance?")
    assert (await loop.poll()).get("reply") == 1
    acks = await loop.acks(account)
    assert len(acks) == 1, acks
    ack = acks[0]
    assert ack.channel == "email" and ack.to == entry["recipient"] and ack.locale == "en"
    assert ack.in_reply_to == customer_msgid
    assert ack.text and ack.text.startswith("Acme: thanks for your message. We're closed right now")

    await loop.send(ack)
    sent = ack_entries(loop.gmail.url, ack)
    assert len(sent) == 1, sent
    assert sent[0]["details"]["mailbox"] == A, "the account's sticky mailbox answers, not the pool's pick"
    assert sent[0]["recipient"] == entry["recipient"]
    msg = await loop.sent_message(sent[0])
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Subject"] == "We received your message"
    assert msg["In-Reply-To"] == customer_msgid
    assert str(msg["References"]).split()[-1] == customer_msgid
    assert str(msg["References"]).split()[0] == f"<{entry['details']['message_id']}>"
    assert msg.get_content_type() == "text/plain" and not msg.is_multipart()
    body = msg.get_content()
    assert ack.text in body and "To stop receiving these emails: " in body
    assert msg["List-Unsubscribe"] and msg["X-Arrears-Notice-Id"] == ack.notice_id
    assert sent[0]["thread_id"] == entry["thread_id"]  # in the customer's Gmail thread of that mailbox

    # a second reply in the same closed period: recorded, no second acknowledgement
    loop.reply(entry, "hello? is anyone there")
    assert (await loop.poll()).get("reply") == 1
    assert [a.notice_id for a in await loop.acks(account)] == [ack.notice_id]

    # replays: the notice delivered again; the mailbox's history expires while a third reply waits, so
    # responses reads the inbox again from scratch (the first two replies are duplicates)
    await loop.send(ack)
    loop.reply(entry, "third time")
    profile = await next(b for b in loop.boxes if b.address == A).client.get_profile()
    emulator(loop.gmail.url, "POST", "history/expire", {"user": A, "up_to_history_id": profile.history_id})
    resync = await loop.poll()
    assert resync.get("duplicate", 0) >= 2 and resync.get("reply") == 1, resync
    assert [a.notice_id for a in await loop.acks(account)] == [ack.notice_id]
    assert len(ack_entries(loop.gmail.url, ack)) == 1


async def test_spanish_reply_is_acknowledged_in_spanish(loop: Loop) -> None:
    await loop.poll()
    await loop.calendar(closed_now())
    account, entry = await loop.customer_with_a_notice()
    loop.reply(entry, "Hola, ¿me pueden llamar mañana por favor?")
    await loop.poll()
    [ack] = await loop.acks(account)
    assert ack.locale == "es" and ack.text and "estamos cerrados" in ack.text
    await loop.send(ack)
    [sent] = ack_entries(loop.gmail.url, ack)
    msg = await loop.sent_message(sent)
    assert msg["Subject"] == "Hemos recibido su mensaje" and msg["Auto-Submitted"] == "auto-replied"
    body = msg.get_content()
    assert ack.text in body and "Para dejar de recibir estos correos: " in body


async def test_a_malformed_message_id_is_not_carried_but_the_reply_is_acknowledged(loop: Loop) -> None:
    await loop.poll()
    await loop.calendar(closed_now())
    account, entry = await loop.customer_with_a_notice()
    loop.reply(entry, "Can you call me about my balance?", message_id="not a message id <x@y>")
    await loop.poll()
    [ack] = await loop.acks(account)
    assert ack.in_reply_to is None
    await loop.send(ack)
    [sent] = ack_entries(loop.gmail.url, ack)
    msg = await loop.sent_message(sent)
    # threaded under our own notice instead, still marked auto-replied
    assert msg["In-Reply-To"] == f"<{entry['details']['message_id']}>"
    assert msg["Auto-Submitted"] == "auto-replied"


async def test_in_hours_reply_gets_none(loop: Loop) -> None:
    await loop.poll()
    await loop.calendar(open_now())
    account, entry = await loop.customer_with_a_notice()
    loop.reply(entry, "Can you call me about my balance?")
    assert (await loop.poll()).get("reply") == 1
    assert await loop.acks(account) == []
    # the same reply with the team closed is acknowledged: the check above can fail
    await loop.calendar(closed_now())
    loop.reply(entry, "Can you call me about my balance?")
    await loop.poll()
    assert len(await loop.acks(account)) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto-Submitted": "auto-replied"},
        {"Auto-Submitted": "auto-generated"},
        {"Precedence": "bulk"},
        {"Precedence": "junk"},
        {"Precedence": "list"},
        {"List-Id": "Customers <customers.lists.example.com>"},
    ],
)
async def test_automatic_bulk_or_list_mail_gets_none(loop: Loop, headers: dict[str, str]) -> None:
    await loop.poll()
    await loop.calendar(closed_now())
    account, entry = await loop.customer_with_a_notice()
    loop.reply(entry, "Can you call me about my balance?", headers)
    await loop.poll()
    assert await loop.acks(account) == []
    # then the customer writes themselves, in the same closed period: that reply is acknowledged
    mine = loop.reply(entry, "Can you call me about my balance?", {"Auto-Submitted": "no"})
    await loop.poll()
    assert [a.in_reply_to for a in await loop.acks(account)] == [mine]


async def test_never_for_a_stop(loop: Loop) -> None:
    await loop.poll()
    await loop.calendar(closed_now())
    account, entry = await loop.customer_with_a_notice()
    loop.reply(entry, "STOP")
    loop.reply(entry, "why do you keep writing")  # opted out on email: nothing automatic
    assert (await loop.poll()).get("reply") == 2
    assert await loop.acks(account) == []


@pytest.mark.parametrize(
    ("address", "answered"),
    [
        ("noreply@example.com", False),
        ("no-reply@example.com", False),
        ("customers-request@lists.example.com", False),
        ("owner-customers@lists.example.com", False),
        ("MAILER-DAEMON@example.com", False),
        ("jane.doe@example.com", True),
        ("reply.jones@example.com", True),
    ],
)
def test_role_addresses_are_never_answered(address: str, answered: bool) -> None:
    assert no_ack_sender(address) is not answered
