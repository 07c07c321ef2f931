"""dispatcher-email: MIME safety, sends and in-doubt reconciliation through the real Gmail client + emulator."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from email import message_from_bytes, policy
from typing import Any

import pytest
from arrears_dispatcher_email.__main__ import build_engine
from arrears_dispatcher_email.settings import EmailSettings
from arrears_shared.db.migrate import upgrade
from arrears_shared.delivery import DeliveryEngine, allow_all

from .helpers import SENDER, bound, control, drain, feed, ledger, message_sent_events, notice, states

SCHEMA = "dispatcher_email"


@pytest.fixture
async def make(
    gmail: Any, fresh_database_url: Callable[..., str]
) -> AsyncIterator[Callable[..., DeliveryEngine]]:
    db = fresh_database_url("dispatch_email")
    await asyncio.to_thread(upgrade, db, "dispatcher-email")
    made: list[Any] = []

    def factory(**kw: Any) -> DeliveryEngine:
        s = EmailSettings(
            service_name="dispatcher-email",
            database_url=db,
            gmail_api_endpoint=gmail.url,
            gmail_token="emulator-token",
            gmail_sender=SENDER,
            gmail_timeout_s=3.0,
            dispatch_in_doubt_after_s=1.0,
            dispatch_backoff_base_s=0.05,
            dispatch_backoff_max_s=0.2,
            **kw,
        )
        eng, ae = bound(build_engine(s, gate=allow_all), db, SCHEMA, "dispatcher-email")
        made.append((eng, ae))
        return eng

    yield factory
    for eng, ae in made:
        await eng.channel.aclose()  # type: ignore[attr-defined]
        await ae.dispose()


def test_header_injection_is_impossible(make: Callable[..., DeliveryEngine]) -> None:
    eng = make()
    n = notice(channel="email", customer_name="Eve\r\nBcc: attacker@evil.test\r\nX-Evil: 1")
    raw = base64.b64decode(eng.channel.render(n)["raw"])
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert [a.addr_spec for a in msg["To"].addresses] == [n.to]
    assert msg["X-Arrears-Notice-Id"] == n.notice_id
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "mailto:" in msg["List-Unsubscribe"] and "https://" in msg["List-Unsubscribe"]
    assert msg["Message-ID"].endswith("@arrears.test>")
    assert {p.get_content_type() for p in msg.iter_parts()} == {"text/plain", "text/html"}
    with pytest.raises(ValueError):
        eng.channel.render(notice(channel="email", to="victim@example.com\r\nBcc: x@evil.test"))


async def test_send_once_and_replay(gmail: Any, make: Callable[..., DeliveryEngine]) -> None:
    eng = make()
    notices = [notice(channel="email") for _ in range(3)]
    await feed(eng, notices, SCHEMA)
    await feed(eng, notices, SCHEMA)
    await drain(eng)
    led = ledger(gmail.url)
    assert sorted(e["notice_id"] for e in led["entries"]) == sorted(n.notice_id for n in notices)
    sent = await message_sent_events(eng.engine, SCHEMA)
    assert sorted(e["notice_id"] for e in sent) == sorted(n.notice_id for n in notices)
    assert all(e["status"] == "sent" and e["thread_id"] for e in sent)


async def test_accept_then_drop_reconciled_by_header(gmail: Any, make: Callable[..., DeliveryEngine]) -> None:
    control(
        gmail.url, "POST", "faults", {"accept_then_drop": {"next": 1, "operations": ["users.messages.send"]}}
    )
    eng = make()
    n = notice(channel="email")
    await feed(eng, [n], SCHEMA)
    await drain(eng)
    assert ledger(gmail.url, notice_id=n.notice_id)["count"] == 1, "the client resent an in-doubt send"
    assert (await states(eng.engine, SCHEMA))[n.notice_id]["state"] == "sending"
    await asyncio.sleep(1.2)
    assert await eng.reconcile_in_doubt() == 1
    await drain(eng)
    assert (await states(eng.engine, SCHEMA))[n.notice_id]["state"] == "sent"
    assert ledger(gmail.url, notice_id=n.notice_id)["count"] == 1


async def test_crash_before_call_resends_once(gmail: Any, make: Callable[..., DeliveryEngine]) -> None:
    eng = make()
    n = notice(channel="email")
    await feed(eng, [n], SCHEMA)
    assert not isinstance(await eng.claim_for_send(), str | None)
    await asyncio.sleep(1.2)
    assert await eng.reconcile_in_doubt() == 1
    await drain(eng)
    assert (await states(eng.engine, SCHEMA))[n.notice_id]["state"] == "sent"
    assert ledger(gmail.url, notice_id=n.notice_id)["count"] == 1
