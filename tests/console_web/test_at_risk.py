"""The console shows an account at risk (a failed payment outstanding): a badge and a "Failed payments"
section on the account page, and an "At risk" filter on the account search — read from the segmenter's
retry state, the real services in-process over one database (no consumers; the test feeds them)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from arrears_console.readmodels.handlers import handle_events
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
from arrears_shared.events import AccountChanged, PaymentFailed
from arrears_shared.service import ServiceHost
from arrears_shared.stream.transaction import transaction
from auth_support import bearer, issue_key_async

from .support import console_host, settings

NOW = datetime.now(UTC).replace(microsecond=0)


def account(aid: str, name: str) -> AccountChanged:
    return AccountChanged(
        account_id=aid,
        change="created",
        source="sheet",
        customer_name=name,
        phone="+14155550100",
        email=f"{aid.lower()}@example.com",
        balance_minor=80_000,
        currency="USD",
        due_date=date(2026, 10, 1),
        timezone="America/New_York",
        country="US",
        sms_consent=True,
        email_consent=True,
        content_hash=f"h-{aid}",
        as_of=NOW - timedelta(days=3),
    )


def envelopes(*events: Any) -> list[Any]:
    out = []
    for i, ev in enumerate(events):
        rec = encode(ev, source="test", id=f"{ev.account_id}-{i}-{type(ev).__name__}")
        out.append(decode(rec.headers, rec.value))
    return out


async def test_an_account_with_a_failed_payment_is_shown_and_found_at_risk(
    broker: Any, fresh_database_url: Any, tmp_path: Path
) -> None:
    url = fresh_database_url("console_at_risk")
    await asyncio.to_thread(upgrade, url, "segmenter")
    await asyncio.to_thread(upgrade, url, "escalation")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ARREARS_DATABASE_URL", url)
        mp.setenv("ARREARS_KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap_servers)
        seg_def = segmenter_definition()
    seg = ServiceHost(dataclasses.replace(seg_def, consumers=(), loops=()))
    seg_app = seg.build_app()
    esc_def = escalation_definition(EscalationSettings(**settings(broker, url)))
    esc_handler = esc_def.consumers[0].handler
    esc = ServiceHost(dataclasses.replace(esc_def, consumers=[], loops=[]))
    esc_app = esc.build_app()
    await seg.start()
    await esc.start()
    try:
        assert seg.ctx and esc.ctx
        async with seg.ctx.engine.begin() as conn:
            collector = await issue_key_async(conn, "collector", name="risk-collector")
        failure = PaymentFailed(
            account_id="RISK-1",
            provider="stripe",
            payment_id="pi_risk",
            failure_id="ch_risk",
            amount_minor=25_000,
            currency="USD",
            failure_code="card_declined",
            failed_at=NOW - timedelta(hours=2),
        )
        facts = [account("RISK-1", "Rita Risk"), account("SAFE-1", "Sam Safe"), failure]
        handler = segmenter_handler(SegmenterDeps(policy=load_policy(), clock=Clock(fixed=NOW)))
        async with transaction(seg.ctx.engine, "segmenter", "segmenter") as tx:
            await handler(envelopes(*facts), tx)
        # what the segmenter published (PaymentRetryChanged at_risk) reaches escalation's timeline
        async with seg.ctx.engine.connect() as conn:
            published = await conn.exec_driver_sql(
                "SELECT headers, value FROM segmenter.outbox WHERE topic = 'account-changed' ORDER BY id"
            )
            retry_events = [
                decode([(k, x.encode() if isinstance(x, str) else x) for k, x in h], bytes(v))
                for h, v in published
            ]
        assert [e.data.status for e in retry_events] == ["at_risk"]  # type: ignore[attr-defined]
        async with transaction(esc.ctx.engine, "escalation", "escalation") as tx:
            await esc_handler(envelopes(*facts) + retry_events, tx)
        async with console_host(broker, url) as (host, client):
            assert host.ctx is not None
            async with transaction(host.ctx.engine, "console", "console") as tx:
                await handle_events(envelopes(*facts[:2]), tx)
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
            page = await client.get("/accounts/RISK-1", headers=bearer(collector))
            assert page.status_code == 200, page.text[:500]
            assert "at risk</span>" in page.text and "Failed payments" in page.text
            assert "pi_risk" in page.text and "retry 0 of 3" in page.text and "next retry" in page.text
            safe = await client.get("/accounts/SAFE-1", headers=bearer(collector))
            assert "at risk</span>" not in safe.text and "Failed payments" not in safe.text
            found = await client.get("/accounts?at_risk=true", headers=bearer(collector))
            assert found.status_code == 200
            assert "RISK-1" in found.text and "SAFE-1" not in found.text
            everyone = await client.get("/accounts", headers=bearer(collector))
            assert "RISK-1" in everyone.text and "SAFE-1" in everyone.text
            out = Path(os.environ.get("ARREARS_SHOTS_DIR", tmp_path))
            (out / "account-at-risk.html").write_text(page.text)
            (out / "accounts-at-risk.html").write_text(found.text)
            await http.aclose()
    finally:
        await esc.stop()
        await seg.stop()
