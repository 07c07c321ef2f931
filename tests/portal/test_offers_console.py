"""Settlement offers on the console's account page: a supervisor sees "Offer a settlement" and makes one
(a call to escalation's API as that person), the offer is listed with its status and can be withdrawn; a
collector sees the list but neither the form nor the withdraw button, and the console refuses them too —
the real console and escalation apps in-process over one database (escalation's consumer fed directly)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from arrears_console.web.upstream import Upstreams
from arrears_escalation.__main__ import definition as escalation_definition
from arrears_escalation.settings import EscalationSettings
from arrears_segmenter.__main__ import definition as segmenter_definition
from arrears_segmenter.consumer import make_handler as segmenter_handler
from arrears_segmenter.deps import Deps as SegmenterDeps
from arrears_segmenter.schedule.models import load_policy
from arrears_shared.clock import Clock
from arrears_shared.cloudevents import decode, encode
from arrears_shared.db.migrate import upgrade
from arrears_shared.events import AccountChanged
from arrears_shared.service import ServiceHost
from arrears_shared.stream.transaction import transaction
from auth_support import bearer, issue_key_async
from console_web.support import console_host, settings


def account(aid: str) -> AccountChanged:
    return AccountChanged(
        account_id=aid, change="created", source="sheet", customer_name="Olga Offer", phone="+14155550100",
        balance_minor=50_000, currency="USD", due_date=date(2026, 10, 1), timezone="America/New_York",
        country="US", sms_consent=True, content_hash=f"h-{aid}", as_of=datetime.now(UTC) - timedelta(days=3),
    )  # fmt: skip


async def test_supervisors_offer_and_withdraw_on_the_account_page_collectors_cannot(
    broker: Any, fresh_database_url: Any, tmp_path: Path
) -> None:
    url = fresh_database_url("console_offers")
    await asyncio.to_thread(upgrade, url, "segmenter")
    await asyncio.to_thread(upgrade, url, "escalation")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ARREARS_DATABASE_URL", url)
        mp.setenv("ARREARS_KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers)
        seg_def = segmenter_definition()
    seg = ServiceHost(dataclasses.replace(seg_def, consumers=(), loops=()))
    seg_app = seg.build_app()
    esc_def = escalation_definition(EscalationSettings(**settings(broker, url)))
    handler = esc_def.consumers[0].handler
    esc = ServiceHost(dataclasses.replace(esc_def, consumers=[], loops=[]))
    esc_app = esc.build_app()
    await seg.start()
    await esc.start()
    try:
        assert esc.ctx is not None and seg.ctx is not None
        async with esc.ctx.engine.begin() as conn:
            keys = {r: await issue_key_async(conn, r, name=f"offer-{r}") for r in ("collector", "supervisor")}
        rec = encode(account("CO-1"), source="test", id="co-1")
        async with transaction(esc.ctx.engine, "escalation", "escalation") as tx:
            await handler([decode(rec.headers, rec.value)], tx)
        seg_handler = segmenter_handler(SegmenterDeps(policy=load_policy(), clock=Clock()))
        async with transaction(seg.ctx.engine, "segmenter", "segmenter") as tx:
            await seg_handler([decode(rec.headers, rec.value)], tx)
        async with console_host(broker, url) as (host, client):
            assert host.ctx is not None
            http = httpx.AsyncClient(
                mounts={
                    "http://segmenter": httpx.ASGITransport(app=seg_app),
                    "http://escalation": httpx.ASGITransport(app=esc_app),
                }
            )
            host.ctx.extra["upstreams"] = Upstreams(
                {"segmenter": "http://segmenter", "escalation": "http://escalation", "responses": "http://x"},
                http,
            )
            sup, col = bearer(keys["supervisor"]), bearer(keys["collector"])
            day = (date.today() + timedelta(days=14)).isoformat()
            form = {"amount": "300.00", "currency": "USD", "expires_on": day, "note": "one-off, hardship"}

            r = await client.post("/accounts/CO-1/offer", data=form, headers=col)
            assert r.status_code == 403
            r = await client.post("/accounts/CO-1/offer", data=form | {"amount": "600"}, headers=sup)
            assert r.status_code == 303 and "offer+refused" in r.headers["location"]  # not below the balance
            r = await client.post("/accounts/CO-1/offer", data=form | {"amount": "abc"}, headers=sup)
            assert r.status_code == 303 and "not+an+amount" in r.headers["location"]
            r = await client.post("/accounts/CO-1/offer", data=form, headers=sup)
            assert r.status_code == 303 and "settlement+offer+so-" in r.headers["location"], r.headers

            page = (await client.get("/accounts/CO-1", headers=sup)).text
            assert "Settlement offers" in page and "Offer a settlement" in page
            assert f"300.00 USD instead of 500.00 USD, by {day}" in page
            assert ">offered</span>" in page and "one-off, hardship" in page and "Withdraw" in page
            (tmp := Path(os.environ.get("ARREARS_SHOTS_DIR", tmp_path))).mkdir(exist_ok=True)
            (tmp / "account-offers.html").write_text(page)
            seen = (await client.get("/accounts/CO-1", headers=col)).text
            assert ">offered</span>" in seen and "Offer a settlement" not in seen and "Withdraw" not in seen

            offer_id = re.search(r"/offers/(so-[0-9a-f]+)/withdraw", page)
            assert offer_id
            path = f"/accounts/CO-1/offers/{offer_id.group(1)}/withdraw"
            assert (await client.post(path, data={}, headers=col)).status_code == 403
            r = await client.post(path, data={"reason": "paid elsewhere"}, headers=sup)
            assert r.status_code == 303 and "withdrawn" in r.headers["location"]
            page = (await client.get("/accounts/CO-1", headers=sup)).text
            assert ">withdrawn</span>" in page and "Withdraw</button>" not in page
            await http.aclose()
    finally:
        await esc.stop()
        await seg.stop()
