"""A channel halt across two dispatchers sharing one database (as in production: `iam` is shared): halting
email holds the email dispatcher's notices while SMS keeps going, and the resume lets each held email go
exactly once. Real PostgreSQL, the real QUO and Gmail clients, sends counted at both emulators' ledgers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from arrears_dispatcher_email.__main__ import build_engine
from arrears_dispatcher_email.settings import EmailSettings
from arrears_shared.control import halts
from arrears_shared.db.migrate import upgrade
from arrears_shared.delivery import DeliveryEngine, allow_all

from .helpers import SENDER, bound, drain, feed, ledger, notice, states


async def test_an_email_halt_holds_email_only_and_each_goes_once_after_resume(
    quo: Any, gmail: Any, db: str, make: Callable[..., DeliveryEngine]
) -> None:
    sms = make()
    await asyncio.to_thread(upgrade, db, "dispatcher-email")
    settings = EmailSettings(
        service_name="dispatcher-email",
        database_url=db,
        gmail_api_endpoint=gmail.url,
        gmail_token="emulator-token",
        gmail_sender=SENDER,
        gmail_timeout_s=3.0,
    )
    email, ae = bound(build_engine(settings, gate=allow_all), db, "dispatcher_email", "dispatcher-email")
    try:
        async with email.engine.begin() as conn:
            halt = await halts.set_halt(conn, "channel", "email", reason="wrong sender address", by="tests")
        mails = [notice(channel="email") for _ in range(3)]
        texts = [notice() for _ in range(2)]
        await feed(email, mails, "dispatcher_email")
        await feed(sms, texts, "dispatcher_sms")
        await drain(sms)
        await drain(email)
        assert ledger(quo.url)["count"] == 2 and ledger(gmail.url)["count"] == 0
        held = await states(email.engine, "dispatcher_email")
        assert {s["state"] for s in held.values()} == {"queued"}
        async with email.engine.begin() as conn:
            await halts.clear_halt(conn, halt.halt_id, reason="sender fixed", by="tests")
        await drain(email)
        for n in mails:
            assert ledger(gmail.url, notice_id=n.notice_id)["count"] == 1
        assert ledger(gmail.url)["count"] == 3 and ledger(quo.url)["count"] == 2
    finally:
        await email.channel.aclose()  # type: ignore[attr-defined]
        await ae.dispose()
