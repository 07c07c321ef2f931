"""dispatcher-email with a mailbox pool as a whole service: two replicas (ServiceHost: consumer group, outbox
relay, send workers) on the real broker and PostgreSQL, racing over the same accounts. Every notice is sent
once, every account from one mailbox; `GET /delivery/mailboxes` reports the pool."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from arrears_dispatcher_email.__main__ import definition
from arrears_dispatcher_email.settings import EmailSettings
from arrears_emulators.common import EmulatorServer, LimitsConfig
from arrears_emulators.gmail.app import GmailConfig
from arrears_emulators.gmail.app import create_app as create_gmail
from arrears_shared.events import Event
from arrears_shared.service import ServiceHost
from auth_support import bearer, issue_key

from .helpers import ledger, notice
from .test_service import collect_sent, publish

A, B = "a.collections@arrears.test", "b.collections@arrears.test"


@pytest.fixture
def gmail() -> Any:
    with EmulatorServer(
        create_gmail(GmailConfig(user_email=A, limits=LimitsConfig(rate=100_000, daily_limit=2000)))
    ) as srv:
        yield srv


async def test_two_replicas_send_each_notice_once_each_account_from_one_mailbox(
    broker: Any, fresh_database_url: Callable[..., str], gmail: Any
) -> None:
    db = fresh_database_url("mailbox_pool_service")
    settings = EmailSettings(
        service_name="dispatcher-email",
        database_url=db,
        kafka_bootstrap_servers=broker.bootstrap_servers,
        gmail_api_endpoint=gmail.url,
        gmail_token="emulator-token",
        gmail_mailboxes=[{"address": A, "rate_per_s": 20.0}, {"address": B, "rate_per_s": 20.0}],
        dispatch_workers=3,
        runner_poll_timeout_ms=100,
        outbox_poll_s=0.02,
    )
    group = f"dispatcher-email-{uuid.uuid4().hex[:6]}"
    replicas = [ServiceHost(definition(settings, group=group)) for _ in range(2)]
    firsts = [notice(channel="email") for _ in range(10)]
    notices = [
        *firsts,
        *(
            n.model_copy(update={"notice_id": n.notice_id.replace(":s1:", f":s{k}:"), "step": k})
            for n in firsts
            for k in (2, 3)
        ),
    ]
    app = replicas[0].build_app()
    for host in replicas:
        await host.start()
    try:
        events: list[tuple[Event, str]] = [(n, f"nd-{n.notice_id}") for n in notices]
        await publish(broker.bootstrap_servers, events)
        ids = {n.notice_id for n in notices}
        sent = await collect_sent(
            broker.bootstrap_servers, db, notices, lambda out: {e.notice_id for e in out} >= ids
        )
        await asyncio.sleep(1.0)  # give a double send the chance to show up
        key = issue_key(db, "supervisor")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://d") as client:
            status = (await client.get("/delivery/mailboxes", headers=bearer(key))).json()
    finally:
        for host in replicas:
            await host.stop()
    assert all(e.status == "sent" for e in sent)
    entries = [e for e in ledger(gmail.url)["entries"] if e["notice_id"] in ids]
    assert Counter(e["notice_id"] for e in entries) == Counter(ids), "a notice was sent twice or not at all"
    by_account: dict[str, set[str]] = {}
    for e in entries:
        by_account.setdefault(e["notice_id"].split(":")[0], set()).add(e["details"]["mailbox"])
    assert all(len(m) == 1 for m in by_account.values()), by_account
    assert {m for ms in by_account.values() for m in ms} == {A, B}
    assert status["pooled"] is True
    reported = {m["address"]: m for m in status["mailboxes"]}
    per_mailbox = Counter(e["details"]["mailbox"] for e in entries)
    assert {a: reported[a]["sent_24h"] for a in (A, B)} == dict(per_mailbox)
    assert sum(reported[a]["accounts"] for a in (A, B)) == len(firsts)
