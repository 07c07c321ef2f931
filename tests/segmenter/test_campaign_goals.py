"""A campaign's goal amount is set on create and update (audited in the segmenter), and the console's campaigns
page shows collected vs goal and the collection rate from escalation's attribution of payments to the
campaign (the campaign of the account's latest automatic message before each payment). Real segmenter,
escalation and console apps on one PostgreSQL database, each in its own schema."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from arrears_console.web.upstream import Upstreams
from arrears_escalation.__main__ import definition as escalation_definition
from arrears_escalation.deps import Deps
from arrears_escalation.settings import EscalationSettings
from arrears_segmenter.__main__ import definition as segmenter_definition
from arrears_shared.cloudevents import decode, encode
from arrears_shared.db.migrate import upgrade
from arrears_shared.events import AccountChanged, DeliveryStatus, Event, MessageSent, Tier
from arrears_shared.service import ServiceHost
from arrears_shared.stream.transaction import transaction
from auth_support import bearer, issue_key_async
from console_web.support import console_host, settings
from sqlalchemy import text

NOW = datetime.now(UTC).replace(microsecond=0)


def sent(aid: str, campaign: str, at: datetime) -> MessageSent:
    return MessageSent(
        account_id=aid, notice_id=f"{aid}:{campaign}", channel="sms", status=DeliveryStatus.SENT,
        provider="quo", to="+14155550100", tier=Tier.REMINDER, step=1, campaign_id=campaign, sent_at=at,
    )  # fmt: skip


def paid(aid: str, amount: int, left: int, at: datetime, currency: str = "USD") -> AccountChanged:
    return AccountChanged(
        account_id=aid, change="payment", source="payment", customer_name="X", balance_minor=left,
        currency=currency, due_date=date(2026, 1, 1), last_payment_minor=amount, last_payment_date=at.date(),
        content_hash=f"{aid}-{amount}-{at.isoformat()}", as_of=at,
    )  # fmt: skip


async def test_goal_set_audited_and_progress_from_the_payments_attributed_to_the_campaign(
    broker: Any, fresh_database_url: Callable[..., str]
) -> None:
    url = fresh_database_url("campaign_goals")
    await asyncio.to_thread(upgrade, url, "segmenter")
    await asyncio.to_thread(upgrade, url, "escalation")
    common = settings(broker, url)
    with pytest.MonkeyPatch.context() as mp:  # the segmenter reads its settings from the environment
        mp.setenv("ARREARS_DATABASE_URL", url)
        mp.setenv("ARREARS_KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers)
        seg_def = segmenter_definition()
    seg = ServiceHost(dataclasses.replace(seg_def, consumers=(), loops=()))
    seg_app = seg.build_app()
    esc_def = escalation_definition(EscalationSettings(**common, escalation_reports_enabled=False), Deps())
    handler = esc_def.consumers[0].handler
    esc = ServiceHost(dataclasses.replace(esc_def, consumers=[], loops=[]))
    esc_app = esc.build_app()
    await seg.start()
    await esc.start()
    try:
        assert seg.ctx is not None and esc.ctx is not None
        async with seg.ctx.engine.begin() as conn:
            sup = await issue_key_async(conn, "supervisor", name="goal-sup")
            viewer = await issue_key_async(conn, "viewer", name="goal-viewer")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=seg_app), base_url="http://s") as sc:
            made = await sc.post(
                "/campaigns",
                json={"campaign_id": "g1", "name": "Spring", "owner": "team-a", "goal_minor": 100_000,
                      "goal_currency": "USD"},
                headers=bearer(sup),
            )  # fmt: skip
            assert made.status_code == 201, made.text
            assert (made.json()["goal_minor"], made.json()["goal_currency"]) == (100_000, "USD")
            bad = await sc.post(
                "/campaigns",
                json={"campaign_id": "g3", "name": "x", "owner": "y", "goal_minor": 5},
                headers=bearer(sup),
            )
            assert bad.status_code == 422  # an amount needs its currency
            g2 = {"campaign_id": "g2", "name": "Autumn", "owner": "team-b"}
            assert (await sc.post("/campaigns", json=g2, headers=bearer(sup))).status_code == 201
            upd = await sc.patch(
                "/campaigns/g2", json={"goal_minor": 20_000, "goal_currency": "USD", "goal": "recover Q3"},
                headers=bearer(sup),
            )  # fmt: skip
            assert upd.status_code == 200, upd.text
            assert (upd.json()["goal_minor"], upd.json()["goal"], upd.json()["name"]) == (
                20_000,
                "recover Q3",
                "Autumn",
            )
            assert (
                await sc.patch("/campaigns/g2", json={"goal_minor": 1}, headers=bearer(viewer))
            ).status_code == 403
            assert (
                await sc.patch("/campaigns/nope", json={"goal": "x"}, headers=bearer(sup))
            ).status_code == 404
        async with seg.ctx.engine.connect() as c:
            [entry] = (
                await c.execute(
                    text(
                        """SELECT actor, before, after FROM segmenter.audit_log
                        WHERE action = 'campaign.update' AND entity_id = 'g2'"""
                    )
                )
            ).all()
        assert entry.actor == "goal-sup"
        assert entry.before == {"goal": "", "goal_minor": None, "goal_currency": None}
        assert entry.after == {"goal": "recover Q3", "goal_minor": 20_000, "goal_currency": "USD"}

        # escalation's record of messages and payments (through its real handler)
        t = NOW - timedelta(hours=6)
        events: list[Event] = [
            paid("GA-4", 7_000, 0, t - timedelta(hours=1)),  # paid before any campaign message: nobody's
            sent("GA-1", "g1", t), sent("GA-2", "g1", t), sent("GA-3", "g2", t),
            paid("GA-1", 30_000, 20_000, t + timedelta(hours=1)),
            paid("GA-2", 10_000, 0, t + timedelta(hours=2)),
            paid("GA-3", 5_000, 15_000, t + timedelta(hours=3)),
        ]  # fmt: skip
        for i, ev in enumerate(events):
            rec = encode(ev, source="test", id=f"goal-{i}")
            async with transaction(esc.ctx.engine, "escalation", "escalation") as tx:
                await handler([decode(rec.headers, rec.value)], tx)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=esc_app), base_url="http://e") as ec:
            r = await ec.get(
                "/collection-metrics/campaigns",
                params={"from": (NOW - timedelta(days=1)).date().isoformat(), "to": NOW.date().isoformat()},
                headers=bearer(viewer),
            )
        assert r.status_code == 200, r.text
        got = {(x["campaign_id"], x["currency"]): x for x in r.json()}
        assert set(got) == {("g1", "USD"), ("g2", "USD")}
        g1 = got[("g1", "USD")]
        assert (g1["collected_minor"], g1["owed_minor"], g1["payments"], g1["accounts"]) == (
            40_000,
            20_000,
            2,
            2,
        )
        assert abs(g1["collection_rate"] - 40_000 / 60_000) < 1e-9

        async with console_host(broker, url) as (host, client):
            assert host.ctx is not None
            http = httpx.AsyncClient(
                mounts={
                    "http://segmenter": httpx.ASGITransport(app=seg_app),
                    "http://escalation": httpx.ASGITransport(app=esc_app),
                }
            )
            ups = Upstreams({"segmenter": "http://segmenter", "escalation": "http://escalation"}, http)
            host.ctx.extra["upstreams"] = ups
            try:
                page = await client.get("/campaigns", headers=bearer(viewer))
            finally:
                await ups.close()
        assert page.status_code == 200, page.text

        def row(cid: str) -> str:
            m = re.search(rf"<td><b>{cid}</b>.*?</tr>", page.text, re.S)
            assert m, cid
            return m.group(0)

        r1, r2 = row("g1"), row("g2")
        assert "400.00 USD" in r1 and "of 1,000.00 USD" in r1 and "<b>40.0%</b>" in r1
        assert 'value="40.0"' in r1 and "collection rate 66.7%" in r1 and "2 payments" in r1
        assert (
            "50.00 USD" in r2
            and "of 200.00 USD" in r2
            and "<b>25.0%</b>" in r2
            and "collection rate 25.0%" in r2
        )
    finally:
        await esc.stop()
        await seg.stop()
