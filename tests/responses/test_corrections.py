"""A person corrects a reply's intent: stored with the reply's text as a labelled example, audited as them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from arrears_responses.__main__ import definition
from arrears_responses.settings import ResponsesSettings
from arrears_shared.service import ServiceHost
from arrears_shared.vault.cipher import is_sealed, open_value
from arrears_shared.vault.keys import vault
from arrears_shared.vault.subject_access import erase
from auth_support import bearer, issue_key_async
from sqlalchemy import text


@pytest.fixture(scope="module")
async def responses(
    broker: Any, fresh_database_url: Callable[..., str]
) -> AsyncIterator[tuple[ServiceHost, httpx.AsyncClient, dict[str, str]]]:
    settings = ResponsesSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=fresh_database_url("responses_corr"),
        runner_poll_timeout_ms=100,
    )
    host = ServiceHost(definition(settings))
    app = host.build_app()
    await host.start()
    assert host.ctx is not None
    async with host.ctx.engine.begin() as conn:
        keys = {
            role: await issue_key_async(conn, role, name=f"{role}-c")
            for role in ("viewer", "collector", "supervisor")
        }
        await conn.execute(
            text(
                """INSERT INTO responses.replies (reply_id, channel, from_address, text, account_id, intent,
                    confidence, received_at)
                VALUES ('r-1', 'sms', '+15550100001', 'no voy a pagar, no es mi deuda', 'AC-1', 'other', 0.41,
                        now())"""
            )
        )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://responses") as c:
        yield host, c, keys
    await host.stop()


async def test_a_correction_is_kept_as_a_labelled_example_and_audited(responses) -> None:
    host, client, keys = responses
    body = {"intent": "dispute"}
    assert (
        await client.post("/replies/r-1/intent", json=body, headers=bearer(keys["viewer"]))
    ).status_code == 403
    assert (
        await client.post(
            "/replies/r-1/intent", json={"intent": "nonsense"}, headers=bearer(keys["collector"])
        )
    ).status_code == 422
    assert (
        await client.post("/replies/nope/intent", json=body, headers=bearer(keys["collector"]))
    ).status_code == 404
    r = await client.post("/replies/r-1/intent", json=body, headers=bearer(keys["collector"]))
    assert r.status_code == 200, r.text
    assert (r.json()["predicted_intent"], r.json()["intent"], r.json()["corrected_by"]) == (
        "other",
        "dispute",
        "collector-c",
    )
    assert host.ctx is not None
    async with host.ctx.engine.connect() as conn:
        example = (
            await conn.execute(
                text("SELECT text, intent, predicted_intent FROM responses.intent_corrections")
            )
        ).one()
        audit = (
            await conn.execute(text("SELECT actor, action, before, after FROM responses.audit_log"))
        ).one()
    # the example's text is sealed with the account's key (the reply was stored in clear, before sealing)
    assert is_sealed(example.text) and "deuda" not in example.text
    async with host.ctx.engine.connect() as conn:
        data_keys = await vault().for_reading(conn, ["AC-1"])
    assert (
        open_value(data_keys["AC-1"], "AC-1", example.text),
        example.intent,
        example.predicted_intent,
    ) == (
        "no voy a pagar, no es mi deuda",
        "dispute",
        "other",
    )
    listed = await client.get("/intent-corrections", headers=bearer(keys["supervisor"]))
    assert listed.status_code == 200, listed.text
    assert [e["text"] for e in listed.json() if e["reply_id"] == "r-1"] == ["no voy a pagar, no es mi deuda"]
    assert (audit.actor, audit.action) == ("collector-c", "reply.intent_corrected")
    assert audit.before["predicted"] == "other" and audit.after["intent"] == "dispute"
    # the decision is published like a reply (same reply id, the person's intent, `reviewed_by`): it is
    # what releases a fail-safe hold in the dispatchers and what escalation and the segmenter act on
    async with host.ctx.engine.connect() as conn:
        values = [
            json.loads(bytes(v))
            for (v,) in (
                await conn.execute(text("SELECT value FROM responses.outbox WHERE topic = 'reply-received'"))
            ).all()
        ]
        reviewed = (
            await conn.execute(text("SELECT reviewed_by FROM responses.replies WHERE reply_id = 'r-1'"))
        ).scalar_one()
    [decision] = [v for v in values if v["reply_id"] == "r-1"]
    assert (decision["intent"], decision["reviewed_by"], decision["account_id"]) == (
        "dispute",
        "collector-c",
        "AC-1",
    )
    assert reviewed == "collector-c"


async def test_an_erased_accounts_reply_is_corrected_but_nothing_is_published_or_sent(responses) -> None:
    """The correction is kept (its text unreadable); no decision is published and no opt-out confirmation is
    sent to the erased account's number."""
    host, client, keys = responses
    assert host.ctx is not None
    async with host.ctx.engine.begin() as conn:
        await conn.execute(
            text(
                """INSERT INTO responses.replies (reply_id, channel, from_address, text, account_id, intent,
                    confidence, received_at)
                VALUES ('r-2', 'sms', '+15550100002', 'STOP texting me', 'AC-2', 'other', 0.41, now())"""
            )
        )
        await vault().for_writing(conn, ["AC-2"])
        assert await erase(conn, "AC-2", "test")
    r = await client.post(
        "/replies/r-2/intent", json={"intent": "opt_out"}, headers=bearer(keys["collector"])
    )
    assert r.status_code == 200, r.text
    assert (r.json()["intent"], r.json()["account_id"]) == ("opt_out", "AC-2")
    async with host.ctx.engine.connect() as conn:
        stored = (
            await conn.execute(text("SELECT text FROM responses.intent_corrections WHERE reply_id = 'r-2'"))
        ).scalar_one()
        about = (
            await conn.execute(
                text(
                    """SELECT count(*) FROM responses.outbox
                    WHERE headers @> CAST('[["ce_subject", "AC-2"]]' AS jsonb)"""
                )
            )
        ).scalar_one()
    assert is_sealed(stored) and "STOP" not in stored
    assert about == 0
