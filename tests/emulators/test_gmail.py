"""Gmail API v1 emulator, driven through the production `GmailClient` (google-api-python-client)."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from email.message import EmailMessage

import httpx
import pytest
from arrears_shared.providers.errors import (
    ProviderInDoubt,
    ProviderQuotaExhausted,
    ProviderRateLimited,
    ProviderTransientError,
)
from arrears_shared.providers.gmail import GmailClient, HistoryExpired

from .conftest import GMAIL_USER, Control

CUSTOMER = "debtor@example.com"
UNTHROTTLED = 1_000_000  # quota units per second


def notice_mime(
    to: str = CUSTOMER, *, notice_id: str | None = None, subject: str = "Payment reminder"
) -> tuple[bytes, str, str]:
    """An outgoing notice with a deterministic Message-ID and the per-notice header."""
    notice = notice_id or str(uuid.uuid4())
    message = EmailMessage()
    message["From"] = f"Arrears Collections <{GMAIL_USER}>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<notice-{notice}@arrears.test>"
    message["X-Arrears-Notice-Id"] = notice
    message["X-Arrears-Tier"] = "polite"
    message.set_content(f"Your balance of EUR 120.00 is overdue.\n\nReference: {notice}\n")
    return message.as_bytes(), notice, f"notice-{notice}@arrears.test"


async def test_send_is_recorded_and_findable(gmail: Control, gmail_client: GmailClient) -> None:
    gmail.limits(rate=UNTHROTTLED)  # this test is not about the per-second quota
    raw, notice, message_id = notice_mime()
    sent = await gmail_client.send_raw(raw)
    assert sent.label_ids == ["SENT"] and sent.thread_id == sent.id

    ledger = gmail.ledger()
    assert (
        ledger["count"] == 1
        and ledger["by_recipient"] == {CUSTOMER: 1}
        and ledger["by_notice"] == {notice: 1}
    )
    entry = ledger["entries"][0]
    assert entry["provider_id"] == sent.id and entry["content"] == "Payment reminder"
    assert entry["details"]["message_id"] == message_id
    assert entry["details"]["x_headers"] == {"X-Arrears-Notice-Id": notice, "X-Arrears-Tier": "polite"}

    assert await gmail_client.find_by_header("X-Arrears-Notice-Id", notice) == [sent.id]
    assert await gmail_client.find_by_header("Message-ID", f"<{message_id}>") == [sent.id]
    assert await gmail_client.find_by_header("X-Arrears-Notice-Id", str(uuid.uuid4())) == []

    full = await gmail_client.get_message(sent.id)
    assert full.header("x-arrears-notice-id") == notice and full.label_ids == ["SENT"]
    raw_back = await gmail_client.get_message(sent.id, format="raw")
    assert raw_back.raw is not None and b"X-Arrears-Notice-Id: " + notice.encode() in raw_back.raw

    reply_raw, _, _ = notice_mime(subject="Re: Payment reminder")
    followup = await gmail_client.send_raw(reply_raw, thread_id=sent.thread_id)
    assert followup.thread_id == sent.thread_id


async def test_search_subset(gmail: Control, gmail_client: GmailClient) -> None:
    gmail.limits(rate=UNTHROTTLED)  # this test is not about the per-second quota
    first = await gmail_client.send_raw(notice_mime("a@example.com", subject="Final notice")[0])
    second = await gmail_client.send_raw(notice_mime("b@example.com", subject="Reminder")[0])
    assert await gmail_client.search("in:sent") == [second.id, first.id]
    assert await gmail_client.search("to:a@example.com subject:final") == [first.id]
    assert await gmail_client.search("in:sent -subject:final") == [second.id]
    assert await gmail_client.search("in:inbox") == []
    page_of_one = await gmail_client.search("from:collections", max_results=1)
    assert page_of_one == [second.id, first.id]


async def test_quota_units_per_second(gmail: Control, gmail_client: GmailClient) -> None:
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(gmail_client.send_raw(notice_mime()[0]) for _ in range(5)), return_exceptions=True
    )
    elapsed = time.monotonic() - started
    limited = [o for o in outcomes if isinstance(o, ProviderRateLimited)]
    assert all(not isinstance(o, BaseException) or isinstance(o, ProviderRateLimited) for o in outcomes), (
        outcomes
    )
    assert len(limited) >= 1
    assert 5 - len(limited) <= 2 + math.ceil(elapsed * 2.5)  # 250 units/s, a send costs 100
    assert all(
        o.status == 429 and o.reason == "userRateLimitExceeded" and o.retry_after_s >= 1 for o in limited
    )
    assert not any(isinstance(o, ProviderQuotaExhausted) for o in limited)
    assert gmail.stats()["rate_limited"] == len(limited)
    assert gmail.ledger()["count"] == 5 - len(limited)


async def test_daily_sending_limit(gmail: Control, gmail_client: GmailClient) -> None:
    gmail.limits(rate=UNTHROTTLED, daily_limit=2)
    await gmail_client.send_raw(notice_mime()[0])
    await gmail_client.send_raw(notice_mime()[0])
    with pytest.raises(ProviderQuotaExhausted) as exc:
        await gmail_client.send_raw(notice_mime()[0])
    # as Gmail answers: 429 "User-rate limit exceeded.  Retry after <time> (Mail sending)", no header; the
    # window is rolling, so the retry time is when the first send of the window is 24 h old
    assert exc.value.status == 429 and "(Mail sending)" in exc.value.message
    assert 86_000 < exc.value.retry_after_s <= 86_400
    assert gmail.ledger()["count"] == 2
    gmail.limits(lift_daily_limit=True)
    await gmail_client.send_raw(notice_mime()[0])


async def test_injected_5xx_is_transient(gmail: Control, gmail_client: GmailClient) -> None:
    gmail.limits(rate=UNTHROTTLED)  # this test is not about the per-second quota
    gmail.faults(error_5xx={"next": 2, "status": 500, "operations": ["users.messages.send"]})
    for _ in range(2):
        with pytest.raises(ProviderTransientError) as exc:
            await gmail_client.send_raw(notice_mime()[0])
        assert exc.value.status == 500
    await gmail_client.send_raw(notice_mime()[0])
    assert gmail.ledger()["count"] == 1


async def test_accept_then_drop_is_in_doubt_and_findable(gmail: Control, gmail_client: GmailClient) -> None:
    gmail.limits(rate=UNTHROTTLED)  # this test is not about the per-second quota
    gmail.faults(accept_then_drop={"next": 1, "operations": ["users.messages.send"]})
    raw, notice, message_id = notice_mime()
    with pytest.raises(ProviderInDoubt):
        await gmail_client.send_raw(raw)
    ledger = gmail.ledger(notice_id=notice)
    assert ledger["count"] == 1 and ledger["entries"][0]["dropped"] is True
    provider_id = ledger["entries"][0]["provider_id"]
    assert await gmail_client.find_by_header("X-Arrears-Notice-Id", notice) == [provider_id]
    assert await gmail_client.find_by_message_id(message_id) == [provider_id]


async def test_timeout_is_in_doubt(gmail: Control) -> None:
    client = GmailClient.for_emulator(gmail.url, timeout_s=0.4)
    try:
        gmail.faults(timeout={"next": 1, "hang_s": 3})
        started = time.monotonic()
        with pytest.raises(ProviderInDoubt):
            await client.send_raw(notice_mime()[0])
        assert time.monotonic() - started < 2.5
        gmail.faults(timeout={"next": 1, "hang_s": 3})
        with pytest.raises(ProviderTransientError):
            await client.get_profile()
    finally:
        client.close()
    assert gmail.ledger()["count"] == 0


async def test_history_reply_bounce_and_expiry(gmail: Control, gmail_client: GmailClient) -> None:
    gmail.limits(rate=UNTHROTTLED)  # this test is not about the per-second quota
    start = (await gmail_client.get_profile()).history_id
    raw, _, message_id = notice_mime()
    sent = await gmail_client.send_raw(raw)
    reply = gmail.post(
        "/_emulator/inbound",
        {
            "from": f"Dee Btor <{CUSTOMER}>",
            "subject": "Re: Payment reminder",
            "body": "I will pay on Friday.",
            "in_reply_to": f"<{message_id}>",
        },
    )
    bounced = await gmail_client.send_raw(notice_mime("nobody@bounce.invalid")[0])
    bounced_config = await gmail_client.send_raw(notice_mime("gone@example.com")[0])

    history = await gmail_client.history(start)
    assert history.history_id == (await gmail_client.get_profile()).history_id
    added = history.added
    assert [m.id for m in added if "SENT" in m.label_ids] == [sent.id, bounced.id, bounced_config.id]
    inbox = [m for m in added if "INBOX" in m.label_ids]
    assert len(inbox) == 3

    assert inbox[0].id == reply["id"] and inbox[0].thread_id == sent.thread_id
    reply_message = await gmail_client.get_message(reply["id"])
    assert reply_message.header("In-Reply-To") == f"<{message_id}>" and "UNREAD" in reply_message.label_ids
    assert "pay on Friday" in reply_message.snippet

    for dsn_ref, original in zip(inbox[1:], (bounced, bounced_config), strict=True):
        dsn = await gmail_client.get_message(dsn_ref.id, format="full")
        assert "mailer-daemon@googlemail.com" in (dsn.header("From") or "")
        original_full = await gmail_client.get_message(
            original.id, format="metadata", metadata_headers=["Message-ID"]
        )
        assert dsn.header("In-Reply-To") == original_full.header("Message-ID")
        assert dsn.thread_id == original.thread_id
        assert dsn.payload is not None and dsn.payload["mimeType"] == "multipart/report"
        assert [p["mimeType"] for p in dsn.payload["parts"]] == [
            "text/plain",
            "message/delivery-status",
            "text/rfc822-headers",
        ]
    assert gmail.stats()["extra"]["bounces"] == 2

    inbox_only = await gmail_client.history(start, label_id="INBOX")
    assert [m.id for m in inbox_only.added] == [m.id for m in inbox]
    assert (await gmail_client.history(history.history_id)).records == []

    gmail.post("/_emulator/history/expire", {})
    with pytest.raises(HistoryExpired):
        await gmail_client.history(start)
    assert (await gmail_client.history(history.history_id)).records == []


async def test_watch_and_profile(gmail: Control, gmail_client: GmailClient) -> None:
    profile = await gmail_client.get_profile()
    assert profile.email_address == GMAIL_USER
    watch = await gmail_client.watch("projects/arrears/topics/gmail", label_ids=["INBOX"])
    assert watch.history_id == profile.history_id
    assert watch.expiration_ms > time.time() * 1000
    await gmail_client.stop_watch()
    assert gmail.stats()["by_operation"]["users.watch"] == 1


def test_requires_bearer_token(gmail: Control) -> None:
    response = httpx.get(gmail.url + "/gmail/v1/users/me/profile")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["status"] == "UNAUTHENTICATED" and error["errors"][0]["reason"] == "required"


async def test_sending_limit_bites_late_and_names_the_retry_time(
    gmail: Control, gmail_client: GmailClient
) -> None:
    """Past the limit Gmail may accept more sends (200) for a while before its 429s start."""
    from arrears_emulators.common import EmulatorServer
    from arrears_emulators.gmail.app import GmailConfig, create_app

    with EmulatorServer(create_app(GmailConfig(user_email=GMAIL_USER, sending_limit_lag=2))) as srv:
        client = GmailClient.for_emulator(srv.url)
        try:
            async with httpx.AsyncClient(base_url=srv.url) as http:
                limits = {"rate": UNTHROTTLED, "daily_limit": 1}
                (await http.put("/_emulator/limits", json=limits)).raise_for_status()
            for _ in range(3):  # one within the limit, two more still accepted
                await client.send_raw(notice_mime()[0])
            with pytest.raises(ProviderQuotaExhausted) as exc:
                await client.send_raw(notice_mime()[0])
            assert exc.value.retry_after_s > 3600
        finally:
            client.close()
