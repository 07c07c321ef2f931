"""Helpers for segmenter tests: a migrated database, event factories, running handlers and ticks."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from arrears_segmenter.__main__ import definition
from arrears_segmenter.consumer import make_handler
from arrears_segmenter.deps import Deps
from arrears_segmenter.schedule.models import load_policy
from arrears_segmenter.timers.scheduled import tick
from arrears_shared.clock import Clock
from arrears_shared.cloudevents import Envelope, decode, encode
from arrears_shared.db.engine import make_engine
from arrears_shared.events import (
    AccountChanged,
    Channel,
    DunningStopped,
    Event,
    Intent,
    NoticeDue,
    ReplyReceived,
)
from arrears_shared.service import ServiceHost
from arrears_shared.stream.transaction import transaction
from arrears_shared.vault.cipher import open_value
from arrears_shared.vault.keys import vault
from arrears_shared.vault.records import open_data
from auth_support import issue_key_async
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

SCHEMA = "segmenter"


def deps(at: datetime) -> Deps:
    return Deps(policy=load_policy(), clock=Clock(fixed=at))


def account(aid: str, **kw: Any) -> AccountChanged:
    base: dict[str, Any] = {
        "account_id": aid,
        "change": "created",
        "source": "sheet",
        "customer_name": "Ada Debtor",
        "phone": "+14155550100",
        "email": "ada@example.com",
        "balance_minor": 50_000,
        "currency": "USD",
        "due_date": date(2026, 3, 1),
        "timezone": "America/New_York",
        "country": "US",
        "region": "NY",
        "sms_consent": True,
        "email_consent": True,
        "content_hash": "h1",
        "as_of": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return AccountChanged(**(base | kw))


def reply(aid: str, intent: Intent, channel: Channel = "sms", **kw: Any) -> ReplyReceived:
    base: dict[str, Any] = {
        "account_id": aid,
        "reply_id": f"r-{aid}-{intent}-{channel}",
        "channel": channel,
        "from_address": "+14155550100",
        "text": "STOP" if intent is Intent.OPT_OUT else "hello",
        "intent": intent,
        "confidence": 0.99,
        "received_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return ReplyReceived(**(base | kw))


def envelope(ev: Event, ce_id: str | None = None) -> Envelope:
    rec = encode(ev, source="test", id=ce_id)
    return decode(rec.headers, rec.value)


async def handle(engine: AsyncEngine, d: Deps, *events: Event) -> None:
    async with transaction(engine, SCHEMA, "segmenter") as tx:
        await make_handler(d)([envelope(e) for e in events], tx)


async def run_tick(engine: AsyncEngine, d: Deps) -> int:
    return await tick(engine, SCHEMA, "segmenter", d)


async def notices(
    engine: AsyncEngine, account_id: str | None = None, purpose: str | None = "dunning"
) -> list[dict[str, Any]]:
    """notice-due events in the outbox (decoded data, personal fields opened with the vault, + ce_id), oldest
    first; of one `purpose` (default: dunning steps, not confirmations or payment retries; None: all)."""
    found = [
        (h, value)
        for h, value in await _notice_due_outbox(engine, NoticeDue)
        if account_id is None or json.loads(value)["account_id"] == account_id
    ]
    async with engine.connect() as c:
        keys = await vault().for_reading(c, {h["ce_subject"] for h, _ in found})
    out = [{"ce_id": h["ce_id"], **open_data(NoticeDue, h["ce_subject"], value, keys)} for h, value in found]
    return [n for n in out if purpose is None or n["purpose"] == purpose]


async def stopped_events(engine: AsyncEngine, account_id: str) -> list[dict[str, Any]]:
    """`DunningStopped` events of the account in the outbox (on `notice-due`), oldest first, with their ce_id."""
    out = []
    for h, value in await _notice_due_outbox(engine, DunningStopped):
        data = json.loads(value)
        if data["account_id"] == account_id:
            out.append({"ce_id": h["ce_id"], **data})
    return out


async def _notice_due_outbox(engine: AsyncEngine, kind: type[Event]) -> list[tuple[dict[str, Any], bytes]]:
    """(headers, value) of the segmenter's outbox records on notice-due of one event type, oldest first
    (the topic carries NoticeDue and DunningStopped)."""
    async with engine.connect() as c:
        rows = (
            await c.execute(
                text(f"SELECT headers, value FROM {SCHEMA}.outbox WHERE topic = 'notice-due' ORDER BY id")
            )
        ).all()
    out = []
    for headers, value in rows:
        h = {k: v for k, v in headers}
        if h.get("ce_type") == kind.ce_type:
            out.append((h, bytes(value)))
    return out


async def decisions(engine: AsyncEngine, account_id: str) -> list[dict[str, Any]]:
    """The account's decision log, oldest first, each `reason` opened (it is stored sealed: test_sealed)."""
    async with engine.connect() as c:
        rows = (
            await c.execute(
                text(f"SELECT * FROM {SCHEMA}.decisions WHERE account_id = :a ORDER BY id"), {"a": account_id}
            )
        ).mappings()
        found = [dict(r) for r in rows]
        keys = await vault().for_reading(c, [account_id])
    return [r | {"reason": open_value(keys.get(account_id), account_id, r["reason"])} for r in found]


async def timers(engine: AsyncEngine, account_id: str) -> list[dict[str, Any]]:
    async with engine.connect() as c:
        rows = (
            await c.execute(
                text(f"SELECT * FROM {SCHEMA}.timers WHERE account_id = :a ORDER BY id"), {"a": account_id}
            )
        ).mappings()
        return [dict(r) for r in rows]


@contextlib.asynccontextmanager
async def segmenter_api(
    bootstrap: str, url: str, key_names: dict[str, str | None]
) -> AsyncIterator[tuple[httpx.AsyncClient, AsyncEngine, dict[str, str]]]:
    """The segmenter's own routers over `url` (no consumers or timer loop: the test drives those, so nothing
    is published), a client, an engine, and one API key per role in `key_names` (role -> key name)."""
    env = {"ARREARS_DATABASE_URL": url, "ARREARS_KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        real = definition()
    host = ServiceHost(dataclasses.replace(real, consumers=(), loops=()))
    app = host.build_app()
    await host.start()
    assert host.ctx is not None
    async with host.ctx.engine.begin() as conn:
        keys = {role: await issue_key_async(conn, role, name=name) for role, name in key_names.items()}
    engine = make_engine(url)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://seg") as client:
            yield client, engine, keys
    finally:
        await engine.dispose()
        await host.stop()
