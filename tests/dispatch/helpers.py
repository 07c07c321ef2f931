"""Shared helpers of the dispatch tests: emulators, notices, engines bound to a fresh database."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from arrears_dispatcher_sms.settings import SmsSettings
from arrears_shared.cloudevents import Envelope
from arrears_shared.db.engine import make_engine
from arrears_shared.delivery import DeliveryEngine
from arrears_shared.delivery.gate import Gate
from arrears_shared.events import (
    AgingBucket,
    Channel,
    Event,
    Intent,
    NoticeDue,
    ReplyReceived,
    Tier,
    utcnow,
)
from arrears_shared.stream.transaction import transaction
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

FROM_NUMBER = "+15550000001"
SENDER = "collections@arrears.test"


def daytime_zone(lo: int = 10, hi: int = 17) -> str:
    """An IANA zone where it is now between lo:00 and hi:00 (inside every contact window)."""
    now = datetime.now(UTC)
    for offset in range(-12, 15):
        name = f"Etc/GMT{'+' if offset <= 0 else '-'}{abs(offset)}"
        if lo <= now.astimezone(ZoneInfo(name)).hour < hi:
            return name
    raise AssertionError("no daytime zone found")


def night_zone() -> str:
    return daytime_zone(2, 5)


def phone() -> str:
    return "+1555" + "".join(random.choice("0123456789") for _ in range(7))


def notice(
    *,
    channel: Channel = "sms",
    to: str | None = None,
    tier: Tier = Tier.REMINDER,
    priority: int = 0,
    due_in_s: float = 0.0,
    timezone: str | None = None,
    customer_name: str = "Jordan Test",
    account_id: str | None = None,
) -> NoticeDue:
    acct = account_id or f"A-{uuid.uuid4().hex[:10]}"
    return NoticeDue(
        account_id=acct,
        notice_id=f"{acct}:p1:v1:s1:c0:{channel}",
        policy_id="p1",
        policy_version=1,
        step=1,
        tier=tier,
        channel=channel,
        template_id=f"{channel}.{tier.value}",
        priority=priority,
        to=to or (phone() if channel == "sms" else f"{acct.lower()}@example.com"),
        customer_name=customer_name,
        balance_minor=25_000,
        currency="USD",
        days_past_due=40,
        aging_bucket=AgingBucket.D31_60,
        timezone=timezone or daytime_zone(),
        country="US",
        due_at=utcnow() + timedelta(seconds=due_in_s),
    )


def opt_out(account_id: str, channel: Channel = "sms") -> ReplyReceived:
    return ReplyReceived(
        account_id=account_id,
        reply_id=f"r-{uuid.uuid4().hex[:8]}",
        channel=channel,
        from_address="+15550009999",
        text="STOP",
        intent=Intent.OPT_OUT,
        confidence=1.0,
        received_at=utcnow(),
    )


def envelope(ev: Event, ce_id: str | None = None, source: str = "test") -> Envelope:
    return Envelope(ce_id or str(uuid.uuid4()), source, ev.ce_type, utcnow(), ev.account_id, ev)


async def feed(eng: DeliveryEngine, events: Sequence[Event], schema: str) -> None:
    """Run the engine's consumer handler on events in one transaction (what the StreamRunner does)."""
    async with transaction(eng.engine, schema, "test") as tx:
        await eng.handle_batch([envelope(e) for e in events], tx)


async def drain(eng: DeliveryEngine, *, timeout_s: float = 30.0) -> None:
    """Process until nothing is due (one worker)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while await eng.process_one():
        assert asyncio.get_running_loop().time() < deadline, "drain timed out"


async def states(engine: AsyncEngine, schema: str) -> dict[str, dict[str, Any]]:
    async with engine.connect() as c:
        rows = await c.execute(
            text(
                f"SELECT notice_id, state, attempts, last_error, provider_message_id FROM {schema}.deliveries"
            )
        )
        return {r.notice_id: dict(r._mapping) for r in rows}


async def message_sent_events(engine: AsyncEngine, schema: str) -> list[dict[str, Any]]:
    """message-sent events written to the outbox (what the relay publishes)."""
    import json

    async with engine.connect() as c:
        rows = await c.execute(
            text(f"SELECT value FROM {schema}.outbox WHERE topic = 'message-sent' ORDER BY id")
        )
        return [json.loads(bytes(r.value)) for r in rows]


def ledger(url: str, **params: Any) -> dict[str, Any]:
    r = httpx.get(f"{url}/_emulator/ledger", params=params, timeout=10)
    r.raise_for_status()
    return r.json()


def emulator_stats(url: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/_emulator/stats", timeout=10)
    r.raise_for_status()
    return r.json()


def control(url: str, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.request(method, f"{url}/_emulator/{path}", json=body, timeout=10)
    r.raise_for_status()
    return r.json()


def bound(eng: DeliveryEngine, db_url: str, schema: str, service: str) -> tuple[DeliveryEngine, AsyncEngine]:
    ae = make_engine(db_url, pool_size=10)
    return eng.bind(ae, schema, service), ae


def sms_settings(quo_url: str, db_url: str, **kw: Any) -> SmsSettings:
    base: dict[str, Any] = {
        "service_name": "dispatcher-sms",
        "database_url": db_url,
        "quo_base_url": quo_url + "/v1",
        "quo_api_key": "test-key",
        "quo_from_number": FROM_NUMBER,
        "quo_timeout_s": 3.0,
        "dispatch_backoff_base_s": 0.05,
        "dispatch_backoff_max_s": 0.2,
        "dispatch_in_doubt_after_s": 1.0,
        "dispatch_reconcile_interval_s": 0.3,
        "dispatch_idle_poll_s": 0.05,
        "dispatch_send_timeout_s": 5.0,
        "dispatch_max_attempts": 4,
    }
    base.update(kw)
    return SmsSettings(**base)


__all__ = ["Gate", "FROM_NUMBER", "SENDER"]
