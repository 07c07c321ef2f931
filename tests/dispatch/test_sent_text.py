"""The text a customer was actually sent travels on `message-sent` (a personal field: sealed on the topic),
is kept sealed on escalation's account timeline and is shown on the console's account page to people who may
read personal data, never to a viewer. Real dispatcher (QUO emulator through the real client), Postgres,
escalation and console apps."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from arrears_console.web.upstream import Upstreams
from arrears_dispatcher_email.mime import build_message
from arrears_escalation.__main__ import definition as escalation_definition
from arrears_escalation.deps import Deps
from arrears_escalation.settings import EscalationSettings
from arrears_shared.db.migrate import upgrade
from arrears_shared.delivery import DeliveryEngine
from arrears_shared.delivery.sent_text import CUT_MARK, MAX_BYTES, sent_text
from arrears_shared.events import MessageSent
from arrears_shared.service import ServiceHost
from arrears_shared.stream.transaction import transaction
from arrears_shared.vault import cipher
from auth_support import bearer, issue_key_async
from console_web.support import console_host, settings
from sqlalchemy import text
from vault_support import opened_json

from .helpers import drain, feed, ledger, notice
from .test_engine import SCHEMA


def test_the_text_of_each_rendered_shape_bounded() -> None:
    assert sent_text(None, {"content": "Hi Ana, $12.00 is due. Reply STOP to opt out"}) == (
        "Hi Ana, $12.00 is due. Reply STOP to opt out"
    )
    long_text = "Dear Ana,\n" + "ñ" * 5000  # two bytes each: past the bound mid-character
    raw = build_message(
        notice_id="n-1", to="ana@example.com", to_name="Ana", sender="billing@example.com",
        sender_name="Arrears", subject="Your balance", text_body=long_text, html_body="<p>html only</p>",
        unsubscribe="https://x.example/u/n-1", date=datetime(2026, 9, 1, tzinfo=UTC),
    )  # fmt: skip
    got = sent_text(None, {"raw": base64.b64encode(raw).decode()})
    assert got is not None and got.startswith("Subject: Your balance\n\nDear Ana,\nñ")
    assert got.endswith(CUT_MARK) and len(got.encode()) <= MAX_BYTES and "html only" not in got
    short = build_message(
        notice_id="n-2", to="ana@example.com", to_name="Ana", sender="billing@example.com",
        sender_name="Arrears", subject="Hi", text_body="Pay here", html_body="<p>Pay here</p>",
        unsubscribe="https://x.example/u/n-2", date=datetime(2026, 9, 1, tzinfo=UTC),
    )  # fmt: skip
    assert sent_text(None, {"raw": base64.b64encode(short).decode()}) == "Subject: Hi\n\nPay here"
    assert sent_text(None, {"type": "text", "text": {"body": "Hola"}}) == "Hola"
    template = {"type": "template", "template": {"name": "reminder_1", "components": [
        {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "$12.00"}]}]}}  # fmt: skip
    assert sent_text(None, template) == "[template reminder_1] Ana | $12.00"

    class Own:
        def sent_text(self, rendered: dict[str, Any]) -> str:
            return "told by the channel"

    assert sent_text(Own(), {"content": "x"}) == "told by the channel"
    assert sent_text(None, None) is None and sent_text(None, {"type": "image"}) is None


async def test_the_sent_text_reaches_the_timeline_sealed_for_a_collector_not_a_viewer(
    quo: Any, make: Callable[..., DeliveryEngine], db: str, broker: Any
) -> None:
    eng = make()
    n = notice(customer_name="Ana Sentext")
    await feed(eng, [n], SCHEMA)
    await drain(eng)
    [delivered] = ledger(quo.url)["entries"]

    # on the topic (the outbox the relay publishes): sealed; opened, exactly what the provider got
    async with eng.engine.connect() as c:
        [row] = (
            await c.execute(
                text(f"SELECT headers, value FROM {SCHEMA}.outbox WHERE topic = 'message-sent' ORDER BY id")
            )
        ).all()
    wire = json.loads(bytes(row.value))
    assert cipher.is_sealed(wire["text"]) and "Ana" not in json.dumps(wire)
    opened = opened_json(db, row.headers, row.value)
    assert opened["text"] == delivered["content"] and "Ana" in opened["text"]
    event = MessageSent.model_validate(opened)

    # escalation consumes it (same database, its own schema): kept sealed on the timeline
    await asyncio.to_thread(upgrade, db, "escalation")
    esc_def = escalation_definition(
        EscalationSettings(**settings(broker, db, escalation_reports_enabled=False)), Deps()
    )
    esc_def.loops = []
    handler = esc_def.consumers[0].handler
    esc_def.consumers = []
    esc = ServiceHost(esc_def)
    esc_app = esc.build_app()
    await esc.start()
    try:
        assert esc.ctx is not None
        from arrears_shared.cloudevents import decode, encode

        rec = encode(event, source="dispatcher-sms", id="sent-text-1")
        async with transaction(esc.ctx.engine, "escalation", "escalation") as tx:
            await handler([decode(rec.headers, rec.value)], tx)
        async with esc.ctx.engine.connect() as c:
            data = (
                await c.execute(
                    text(
                        "SELECT data FROM escalation.activity WHERE account_id = :a AND kind = 'message_out.sent'"
                    ),
                    {"a": n.account_id},
                )
            ).scalar_one()
        assert cipher.is_sealed(data["text"]) and "Ana" not in json.dumps(data)
        async with esc.ctx.engine.begin() as conn:
            collector = await issue_key_async(conn, "collector")
            viewer = await issue_key_async(conn, "viewer")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=esc_app), base_url="http://esc") as ec:
            tl = await ec.get(f"/accounts/{n.account_id}/timeline", headers=bearer(collector))
            assert tl.status_code == 200, tl.text
            [item] = [i for i in tl.json() if i["kind"] == "message_out.sent"]
            assert item["data"]["text"] == delivered["content"]
            assert (
                await ec.get(f"/accounts/{n.account_id}/timeline", headers=bearer(viewer))
            ).status_code == 403

        async with console_host(broker, db) as (host, client):
            assert host.ctx is not None
            ups = Upstreams(
                {"escalation": "http://escalation", "segmenter": "http://escalation"},
                httpx.AsyncClient(transport=httpx.ASGITransport(app=esc_app)),
            )
            host.ctx.extra["upstreams"] = ups
            try:
                page = await client.get(f"/accounts/{n.account_id}", headers=bearer(collector))
                assert page.status_code == 200, page.text
                assert "Text sent" in page.text
                shown = delivered["content"].replace("'", "&#39;").replace('"', "&#34;")
                assert shown in page.text or delivered["content"] in page.text
                refused = await client.get(f"/accounts/{n.account_id}", headers=bearer(viewer))
                assert refused.status_code == 403 and "Ana" not in refused.text
                assert delivered["content"] not in refused.text
            finally:
                await ups.close()
    finally:
        await esc.stop()
