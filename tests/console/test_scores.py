"""Issue #20 (console side): the console's read models consume `account-scored` from the real broker; the
account page shows each score with its top reasons, the account list filters on the model's band, and the
work list can be ordered by expected recovery. The segmenter and escalation apps answer the page's calls
in-process over the same database (no consumers of theirs: the test feeds them)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from arrears_console.__main__ import definition as console_definition
from arrears_console.settings import ConsoleSettings
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
from arrears_shared.events import AccountChanged, AccountScored, RiskBand, ScoreReason
from arrears_shared.service import ServiceHost
from arrears_shared.stream.transaction import transaction
from auth_support import bearer, issue_key_async
from sqlalchemy import text

from .test_console import eventually, produce

NOW = datetime.now(UTC).replace(microsecond=0)
TODAY = NOW.date()


def account(aid: str, name: str) -> AccountChanged:
    return AccountChanged(
        account_id=aid,
        change="created",
        source="sheet",
        customer_name=name,
        phone="+14155550100",
        email=f"{aid.lower()}@example.com",
        balance_minor=120_000,
        currency="USD",
        due_date=TODAY - timedelta(days=50),
        timezone="America/New_York",
        country="US",
        sms_consent=True,
        email_consent=True,
        content_hash=f"h-{aid}",
        as_of=NOW - timedelta(days=1),
    )


def scored(aid: str, band: RiskBand, risk: int, day: date = TODAY, **kw: Any) -> AccountScored:
    base: dict[str, Any] = {
        "account_id": aid,
        "scored_on": day,
        "model_version": "pay14-2026.12.05",
        "risk_score": risk,
        "band": band,
        "p_pay_14d": 0.18,
        "dropout_risk": 0.64,
        "expected_recovery": 0.55,
        "expected_recovery_minor": 66_000,
        "currency": "USD",
        "best_channel": "sms",
        "best_hour": 18,
        "reasons": [
            ScoreReason(
                feature="promises_broken_90d", label="Broke 2 promises in the last 90 days", contribution=18.4
            ),
            ScoreReason(feature="replies_30d", label="No reply to the last 4 messages", contribution=11.2),
            ScoreReason(
                feature="partial_payments_90d", label="Paid part of the balance in October", contribution=-6.5
            ),
        ],
        "scored_at": datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=5),
    }
    return AccountScored(**(base | kw))


def envelopes(*events: Any) -> list[Any]:
    out = []
    for i, ev in enumerate(events):
        rec = encode(ev, source="test", id=f"{ev.account_id}-{i}-{type(ev).__name__}-{uuid.uuid4().hex[:6]}")
        out.append(decode(rec.headers, rec.value))
    return out


async def test_scores_reach_the_account_page_list_filter_and_work_list(
    broker: Any, fresh_database_url: Callable[..., str], tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    hi, lo, none = f"SCO-{tag}-HI", f"SCO-{tag}-LO", f"SCO-{tag}-NO"
    url = fresh_database_url("console_scores")
    await asyncio.to_thread(upgrade, url, "segmenter")
    await asyncio.to_thread(upgrade, url, "escalation")
    with_broker = {
        "kafka_bootstrap_servers": broker.bootstrap_servers,
        "database_url": url,
        "runner_poll_timeout_ms": 100,
    }
    with_env = {"ARREARS_DATABASE_URL": url, "ARREARS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers}
    old = {k: os.environ.get(k) for k in with_env}
    os.environ.update(with_env)
    try:
        seg_def = segmenter_definition()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    seg = ServiceHost(dataclasses.replace(seg_def, consumers=(), loops=()))
    seg_app = seg.build_app()
    esc_def = escalation_definition(EscalationSettings(**with_broker))
    esc_handler = esc_def.consumers[0].handler
    esc = ServiceHost(dataclasses.replace(esc_def, consumers=[], loops=[]))
    esc_app = esc.build_app()
    # the console with its real consumer: it reads every topic, account-scored included, from the broker
    con = ServiceHost(console_definition(ConsoleSettings(**with_broker, outbox_poll_s=0.05)))
    con_app = con.build_app()
    await seg.start()
    await esc.start()
    await con.start()
    http = httpx.AsyncClient(
        mounts={
            "http://segmenter": httpx.ASGITransport(app=seg_app),
            "http://escalation": httpx.ASGITransport(app=esc_app),
        }
    )
    try:
        assert seg.ctx and esc.ctx and con.ctx
        async with seg.ctx.engine.begin() as conn:
            collector = await issue_key_async(conn, "collector", name="score-collector")
        facts: list[Any] = [account(hi, "Hana High"), account(lo, "Leo Low"), account(none, "Nora None")]
        scores = [
            scored(hi, RiskBand.LOW, 20, TODAY - timedelta(days=1)),  # yesterday's, replaced by today's
            scored(hi, RiskBand.HIGH, 82),
            scored(lo, RiskBand.LOW, 21, expected_recovery_minor=99_000, reasons=[]),
        ]
        async with transaction(seg.ctx.engine, "segmenter", "segmenter") as tx:
            await segmenter_handler(SegmenterDeps(policy=load_policy(), clock=Clock(fixed=NOW)))(
                envelopes(*facts, *scores), tx
            )
        async with transaction(esc.ctx.engine, "escalation", "escalation") as tx:
            await esc_handler(envelopes(*facts, *scores), tx)
        await produce(
            broker.bootstrap_servers,
            [(ev, f"{tag}-{i}") for i, ev in enumerate([*facts, *scores, scores[0]])],  # + a late old one
        )
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=con_app), base_url="http://console")
        con.ctx.extra["upstreams"] = Upstreams(
            {"segmenter": "http://segmenter", "escalation": "http://escalation", "responses": "http://x"},
            http,
        )
        who = bearer(collector)

        async def scored_high() -> Any:
            r = await client.get(f"/api/accounts/{hi}/score", headers=who)
            return r.json() if r.status_code == 200 and r.json()["band"] == "high" else None

        api = await eventually(scored_high)
        assert (api["risk_score"], api["best_channel"], api["best_hour"]) == (82, "sms", 18)
        assert [r["label"] for r in api["reasons"]][:1] == ["Broke 2 promises in the last 90 days"]
        assert (await client.get(f"/api/accounts/{none}/score", headers=who)).status_code == 404
        assert (await client.get(f"/api/accounts/{hi}/score")).status_code == 401

        async def listed() -> Any:
            r = (await client.get("/api/accounts", params={"q": f"SCO-{tag}"}, headers=who)).json()
            return r if r["count"] == 3 else None

        by_id = {a["account_id"]: a for a in (await eventually(listed))["items"]}
        assert (by_id[hi]["risk_band"], by_id[lo]["risk_band"], by_id[none]["risk_band"]) == (
            "high",
            "low",
            None,
        )
        high = (
            await client.get("/api/accounts", params={"q": f"SCO-{tag}", "band": "high"}, headers=who)
        ).json()
        assert [a["account_id"] for a in high["items"]] == [hi]

        page = await client.get(f"/accounts/{hi}", headers=who)
        assert page.status_code == 200, page.text[:500]
        html = page.text
        assert "Model score" in html and "<b>82</b>/100" in html and "high risk</span>" in html
        assert "Broke 2 promises in the last 90 days" in html and "+18.4 risk" in html and "-6.5 risk" in html
        assert (
            "Payment in 14 days</dt><dd>18%" in html and "660.00 USD" in html and "around 18:00 local" in html
        )
        unscored = await client.get(f"/accounts/{none}", headers=who)
        assert "Not scored yet" in unscored.text
        found = await client.get("/accounts", params={"q": f"SCO-{tag}", "band": "high"}, headers=who)
        assert hi in found.text and lo not in found.text and none not in found.text

        # the timeline says it too, from the console's own read model
        async def on_timeline() -> Any:
            r = (await client.get(f"/api/accounts/{hi}/timeline", headers=who)).json()
            return [i for i in r["items"] if i["topic"] == "account-scored"] or None

        lines = [i["summary"] for i in await eventually(on_timeline)]
        assert any(s.startswith("scored 82 (high risk) by model pay14-2026.12.05") for s in lines)

        # the recovery team's work list ordered by expected recovery (escalation assigned the high account)
        async with esc.ctx.engine.begin() as conn:
            recovery = await issue_key_async(conn, "collector", name="rec-1")
            await conn.execute(
                text("UPDATE escalation.tasks SET assignee = 'rec-1' WHERE account_id = :a"), {"a": hi}
            )
        work = await client.get("/work", params={"sort": "expected_recovery"}, headers=bearer(recovery))
        assert work.status_code == 200, work.text[:500]
        assert "expected recovery (model), largest first</option>" in work.text
        assert "recovery_outreach" in work.text and "risk high</span> expected 660.00 USD" in work.text

        out = Path(os.environ.get("ARREARS_SHOTS_DIR", tmp_path))
        (out / "account-score.html").write_text(html)
        (out / "accounts-band.html").write_text(found.text)
        (out / "work-expected-recovery.html").write_text(work.text)
        await client.aclose()
    finally:
        await http.aclose()
        await con.stop()
        await esc.stop()
        await seg.stop()
