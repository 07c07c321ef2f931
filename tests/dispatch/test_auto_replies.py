"""The automatic answers responses emits (opt-out confirmation, HELP) through the real SMS delivery engine:
sent once, never blocked by the opt-out they confirm nor by contact hours, while dunning stays blocked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import pytest
from arrears_dispatcher_sms.__main__ import build_engine
from arrears_responses.autoreplies.service import answer_notice
from arrears_responses.settings import ResponsesSettings
from arrears_shared.db.migrate import upgrade
from arrears_shared.delivery import DeliveryEngine
from arrears_shared.events import utcnow

from .helpers import (
    bound,
    drain,
    feed,
    ledger,
    message_sent_events,
    night_zone,
    notice,
    opt_out,
    phone,
    states,
)
from .test_engine import SCHEMA, sms_settings


@pytest.fixture
async def db(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("dispatch_auto")
    await asyncio.to_thread(upgrade, url, "dispatcher-sms")
    return url


@pytest.fixture
async def eng(quo: Any, db: str) -> AsyncIterator[DeliveryEngine]:
    e, ae = bound(build_engine(sms_settings(quo.url, db)), db, SCHEMA, "dispatcher-sms")  # real gate
    yield e
    await e.channel.aclose()  # type: ignore[attr-defined]
    await ae.dispose()


async def test_confirmation_is_sent_once_despite_the_opt_out_and_the_night(
    quo: Any, eng: DeliveryEngine
) -> None:
    rs = ResponsesSettings(responses_brand_name="Acme Dental")
    number = phone()
    dunning = notice(to=number, timezone=night_zone())
    stop = opt_out(dunning.account_id)
    confirm = answer_notice(
        rs,
        "opt_out_confirmation",
        account_id=dunning.account_id,
        reply_id=stop.reply_id,
        address=number,
        received_at=utcnow(),
    )
    # the opt-out is applied before the confirmation arrives, and the confirmation is delivered twice
    await feed(eng, [dunning, stop], SCHEMA)
    await feed(eng, [confirm], SCHEMA)
    await feed(eng, [confirm], SCHEMA)
    await drain(eng)
    st = await states(eng.engine, SCHEMA)
    assert st[confirm.notice_id]["state"] == "sent"
    assert st[dunning.notice_id]["state"] == "suppressed"
    entries = ledger(quo.url)["entries"]
    assert [e["recipient"] for e in entries] == [number]
    sent = {e["notice_id"]: e for e in await message_sent_events(eng.engine, SCHEMA)}
    assert sent[confirm.notice_id]["status"] == "sent"
    assert sent[dunning.notice_id]["reason"] == "opted_out"
    # a later dunning notice stays blocked for good
    later = notice(to=number, account_id=dunning.account_id)
    later = later.model_copy(update={"notice_id": later.notice_id + ":later"})
    await feed(eng, [later], SCHEMA)
    await drain(eng)
    assert (await states(eng.engine, SCHEMA))[later.notice_id]["state"] == "suppressed"
    assert ledger(quo.url)["count"] == 1


async def test_expired_auto_reply_is_dropped_not_sent(quo: Any, eng: DeliveryEngine) -> None:
    rs = ResponsesSettings(responses_auto_reply_expiry_s=1)
    old = answer_notice(
        rs,
        "help",
        account_id="A-old",
        reply_id="r-old",
        address=phone(),
        received_at=utcnow() - timedelta(hours=2),
    )
    await feed(eng, [old], SCHEMA)
    await drain(eng)
    assert (await states(eng.engine, SCHEMA))[old.notice_id]["state"] == "suppressed"
    assert ledger(quo.url)["count"] == 0
