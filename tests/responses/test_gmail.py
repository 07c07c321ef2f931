"""Gmail inbound against the Gmail emulator with the real google-api-python-client: history polling from a
stored id, full resync after expiry, matching by References / thread / address, bounces (DSN) and
automatic replies recognised, and the Pub/Sub push endpoint waking the poller of the running service."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from arrears_emulators.common import EmulatorServer
from arrears_emulators.gmail.app import GmailConfig
from arrears_emulators.gmail.app import create_app as create_gmail
from arrears_responses.contacts.handlers import handle_message_sent
from arrears_responses.gmail.parse import EmailKind, parse_email
from arrears_responses.gmail.poller import poll_once
from arrears_responses.settings import ResponsesSettings
from arrears_shared.cloudevents import decode, encode
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.events import DeliveryStatus, Intent, MessageSent, Tier
from arrears_shared.providers.gmail import GmailClient
from arrears_shared.stream.transaction import transaction
from arrears_shared.vault.cipher import is_sealed, open_value
from arrears_shared.vault.keys import vault
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from vault_support import open_json, row_record

MAILBOX = "collections@arrears.test"


def message_id_for(notice_id: str) -> str:
    """What dispatcher-email puts in Message-ID (its `mime.message_id_for`)."""
    from arrears_dispatcher_email.mime import message_id_for as real

    return real(notice_id, MAILBOX)


@pytest.fixture
def gmail() -> Iterator[Any]:
    with EmulatorServer(create_gmail(GmailConfig(user_email=MAILBOX))) as srv:
        yield srv


@pytest.fixture
async def db(fresh_database_url: Callable[..., str]) -> AsyncIterator[AsyncEngine]:
    url = fresh_database_url("responses_gmail")
    await asyncio.to_thread(upgrade, url, "responses")
    engine = make_engine(url)
    yield engine
    await engine.dispose()


def settings(gmail_url: str, **kw: Any) -> ResponsesSettings:
    return ResponsesSettings(
        gmail_api_endpoint=gmail_url,
        gmail_token="t",
        gmail_sender=MAILBOX,
        responses_gmail_enabled=True,
        **kw,
    )


def control(gmail_url: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """The emulator's control API (what a test uses to make mail arrive or history expire)."""
    with httpx.Client(timeout=10) as c:
        r = c.post(f"{gmail_url}{path}", json=body)
        r.raise_for_status()
        return r.json()


def inject(gmail_url: str, **body: Any) -> dict[str, Any]:
    return control(gmail_url, "/_emulator/inbound", body)


def sent_email(account: str, notice: str, to: str, thread_id: str | None = None) -> MessageSent:
    return MessageSent(
        account_id=account,
        notice_id=notice,
        channel="email",
        status=DeliveryStatus.SENT,
        provider="gmail",
        provider_message_id=f"m-{notice}",
        thread_id=thread_id,
        to=to,
        tier=Tier.FIRM,
        step=2,
        sent_at=datetime.now(UTC),
    )


async def index_sent(engine: AsyncEngine, *events: MessageSent) -> None:
    async with transaction(engine, "responses", "responses") as tx:
        envs = []
        for ev in events:
            rec = encode(ev, source="dispatcher-email")
            envs.append(decode(rec.headers, rec.value))
        await handle_message_sent(envs, tx)


async def poll(engine: AsyncEngine, client: GmailClient, s: ResponsesSettings) -> Any:
    async with transaction(engine, "responses", "responses") as tx:
        return await poll_once(tx, client, s)


async def outbox(engine: AsyncEngine, topic: str) -> list[dict[str, Any]]:
    """The data of the events written to `topic`, personal fields (sealed as written) opened as a consumer
    opens them."""
    async with engine.connect() as c:
        rows = await c.execute(
            text("SELECT headers, value FROM responses.outbox WHERE topic = :t ORDER BY id"), {"t": topic}
        )
        return await open_json(c, [row_record(r) for r in rows])


async def test_history_polling_matching_bounces_auto_replies_and_resync(gmail: Any, db: AsyncEngine) -> None:
    s = settings(gmail.url)
    client = GmailClient.for_emulator(gmail.url, timeout_s=5.0)
    try:
        await index_sent(
            db,
            sent_email("A-ref", "n-ref", "ref@example.com"),
            sent_email("A-addr", "n-addr", "addr@example.com"),
        )
        first = await poll(db, client, s)  # initialises the cursor at "now"
        assert first.outcomes == {}
        # a reply quoting our notice (References), one by address only, one from a stranger
        inject(
            gmail.url,
            **{"from": "Someone Else <other@example.org>"},
            subject="Re: your balance",
            body="I'll pay $120 on Friday\n\nOn Mon, Nov 23 Arrears wrote:\n> STOP",
            in_reply_to=message_id_for("n-ref"),
        )
        inject(
            gmail.url, **{"from": "ADDR@example.com"}, subject="Re: reminder", body="Please unsubscribe me"
        )
        inject(gmail.url, **{"from": "nobody@example.net"}, subject="hello", body="who is this?")
        # out-of-office from a known address: recorded, no event
        inject(
            gmail.url,
            **{"from": "addr@example.com"},
            subject="Out of Office: back Monday",
            body="I am out of the office until Monday.",
            headers={"Auto-Submitted": "auto-replied"},
        )
        # a hard bounce of the notice sent to a dead address: the emulator answers with a DSN
        mime = EmailMessage()
        mime["From"], mime["To"], mime["Subject"] = MAILBOX, "gone@bounce.invalid", "Reminder"
        mime["Message-ID"] = message_id_for("n-gone")
        mime.set_content("Your balance is due. Unsubscribe: https://x/u")
        sent = await client.send_raw(mime.as_bytes())
        await index_sent(db, sent_email("A-gone", "n-gone", "gone@bounce.invalid", thread_id=sent.thread_id))

        result = await poll(db, client, s)
        assert result.outcomes == {"reply": 2, "unmatched": 1, "auto_reply": 1, "bounce": 1, "skipped": 1}, (
            result
        )
        replies = {r["account_id"]: r for r in await outbox(db, "reply-received")}
        assert set(replies) == {"A-ref", "A-addr"}
        assert replies["A-ref"]["intent"] == Intent.PROMISE_TO_PAY.value
        assert replies["A-ref"]["promise_amount_minor"] == 12_000
        assert replies["A-ref"]["in_reply_to_notice_id"] == "n-ref" and "STOP" not in replies["A-ref"]["text"]
        assert replies["A-addr"]["intent"] == Intent.OPT_OUT.value and replies["A-addr"]["channel"] == "email"
        [bounce] = await outbox(db, "message-sent")
        assert (bounce["account_id"], bounce["notice_id"], bounce["status"], bounce["permanent"]) == (
            "A-gone",
            "n-gone",
            "failed",
            True,
        )
        assert bounce["reason"].startswith("bounced: 5.1.1")
        assert bounce["to"] == "gone@bounce.invalid"  # opened from email_sent, where it is sealed
        async with db.connect() as c:
            sent_to: dict[str, str] = dict(
                (await c.execute(text("SELECT notice_id, address FROM responses.email_sent"))).all()
            )
            stored = (
                await c.execute(text("SELECT account_id, from_address, text FROM responses.replies"))
            ).all()
            keys = await vault().for_reading(c, ["A-ref", "A-addr", "A-gone"])
        assert set(sent_to) == {"n-ref", "n-addr", "n-gone"}
        assert all(is_sealed(a) and "@" not in a for a in sent_to.values())
        assert open_value(keys["A-gone"], "A-gone", sent_to["n-gone"]) == "gone@bounce.invalid"
        for r in stored:  # a matched email's sender and text sealed; the stranger's kept in clear
            if r.account_id is None:
                assert (r.from_address, r.text) == ("nobody@example.net", "who is this?")
            else:
                assert is_sealed(r.from_address) and is_sealed(r.text) and "@" not in r.from_address
        addr = [r for r in stored if r.account_id == "A-addr"]
        opened = {open_value(keys["A-addr"], "A-addr", r.text) for r in addr}
        assert "Please unsubscribe me" in opened
        assert {open_value(keys["A-addr"], "A-addr", r.from_address) for r in addr} == {"addr@example.com"}
        async with db.connect() as c:
            kinds = dict(
                (
                    await c.execute(
                        text("SELECT kind, count(*) FROM responses.replies GROUP BY kind ORDER BY kind")
                    )
                ).all()
            )
            by = dict(
                (
                    await c.execute(
                        text(
                            "SELECT account_id, matched_by FROM responses.replies WHERE kind='reply' AND account_id IS NOT NULL"
                        )
                    )
                ).all()
            )
        assert kinds == {"auto_reply": 1, "bounce": 1, "reply": 3}
        assert by == {"A-ref": "references", "A-addr": "address"}

        # nothing new: a poll is a no-op
        assert (await poll(db, client, s)).outcomes == {}

        # history expires while a new reply waits: full resync finds it, re-reads the rest as duplicates
        inject(gmail.url, **{"from": "addr@example.com"}, subject="Re: reminder", body="wrong number")
        profile = await client.get_profile()
        control(gmail.url, "/_emulator/history/expire", {"up_to_history_id": profile.history_id})
        resync = await poll(db, client, s)
        assert (
            resync.full_sync
            and resync.outcomes.get("reply") == 1
            and resync.outcomes.get("duplicate", 0) >= 4
        )
        assert len(await outbox(db, "reply-received")) == 3
        async with db.connect() as c:
            assert (await c.execute(text("SELECT full_syncs FROM responses.gmail_cursor"))).scalar() == 1
        assert (await poll(db, client, s)).outcomes == {}  # and the cursor continues normally
    finally:
        client.close()


def test_parse_recognises_dsn_auto_reply_and_quoted_text() -> None:
    ooo = EmailMessage()
    ooo["From"], ooo["To"], ooo["Subject"] = "a@x.com", MAILBOX, "Automatic reply: Your account"
    ooo.set_content("Thanks, I'm away.")
    assert parse_email(ooo.as_bytes()).kind is EmailKind.AUTO_REPLY
    prec = EmailMessage()
    prec["From"], prec["Subject"], prec["Precedence"] = "a@x.com", "Re: balance", "auto_reply"
    prec.set_content("x")
    assert parse_email(prec.as_bytes()).kind is EmailKind.AUTO_REPLY
    human = EmailMessage()
    human["From"], human["Subject"], human["Auto-Submitted"] = "a@x.com", "Re: balance", "no"
    human["References"] = f"<abc@x> {message_id_for('n-1')}"
    human.set_content("not my debt\n\nOn Tue someone wrote:\n> pay now\n")
    parsed = parse_email(human.as_bytes())
    assert parsed.kind is EmailKind.REPLY and parsed.text == "not my debt"
    from arrears_responses.gmail.service import msgid_hash

    assert parsed.notice_hashes == [msgid_hash("n-1")]
    daemon = EmailMessage()
    daemon["From"], daemon["Subject"] = "MAILER-DAEMON@mx.example.com", "Undeliverable"
    daemon["X-Failed-Recipients"] = "Dead@Example.com"
    daemon.set_content("delivery failed")
    bounce = parse_email(daemon.as_bytes())
    assert (
        bounce.kind is EmailKind.BOUNCE
        and bounce.bounce_recipient == "dead@example.com"
        and bounce.hard_bounce
    )


# -- users.watch renewal (issue #13) ---------------------------------------------------------------------
async def watch_calls(url: str) -> int:
    async with httpx.AsyncClient() as c:
        return int((await c.get(f"{url}/_emulator/stats")).json()["extra"]["watch_calls"])


async def test_watch_is_renewed_daily_once_per_mailbox_across_replicas_and_restarts(
    gmail: Any, db: AsyncEngine
) -> None:
    """A watch lasts 7 days: renewed when due (a row per mailbox, durable), by one replica at a time."""
    from arrears_responses.gmail.watch import renew_watch_once

    s = settings(gmail.url, responses_gmail_watch_topic="projects/arrears/topics/gmail")
    replicas = [GmailClient.for_emulator(gmail.url), GmailClient.for_emulator(gmail.url)]
    try:

        async def renew(client: GmailClient) -> bool:
            async with transaction(db, "responses", "responses") as tx:
                return await renew_watch_once(tx, client, s)

        # two replicas at once: one renews, the other skips the locked row
        assert sorted(await asyncio.gather(*(renew(c) for c in replicas))) == [False, True]
        assert (await watch_calls(gmail.url)) == 1
        # "restarted" replicas: the schedule is in Postgres, nothing is due for a day
        assert not await renew(GmailClient.for_emulator(gmail.url))
        async with db.connect() as c:
            row = (await c.execute(text("SELECT * FROM responses.gmail_watch"))).one()
        assert row.renewals == 1 and row.expires_at > datetime.now(UTC)
        assert 23.9 < (row.next_renewal_at - datetime.now(UTC)).total_seconds() / 3600 <= 24
        # a day later it is due again
        async with db.begin() as c:
            await c.execute(text("UPDATE responses.gmail_watch SET next_renewal_at = now() - interval '1 s'"))
        assert await renew(replicas[1])
        assert (await watch_calls(gmail.url)) == 2
    finally:
        for c in replicas:
            c.close()
