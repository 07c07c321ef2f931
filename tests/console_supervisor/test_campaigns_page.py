"""/campaigns: everyone sees the list; a supervisor creates a campaign from the form, activates it (segmenter,
lifecycle) and pauses it (escalation's campaign override, carried to the segmenter as an `overrides` event);
each is recorded with the signed-in person as the actor."""

from __future__ import annotations

from typing import Any

from arrears_segmenter.consumer import make_handler
from arrears_segmenter.deps import Deps
from arrears_segmenter.schedule.models import load_policy
from arrears_shared.clock import Clock
from arrears_shared.cloudevents import decode
from arrears_shared.stream.transaction import transaction
from arrears_shared.vault.keys import vault
from sqlalchemy import text

from .support import SUPERVISOR, Stack


async def rows(stack: Stack, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    async with stack.engine.connect() as c:
        return [tuple(r) for r in await c.execute(text(sql), params)]


async def deliver_overrides(stack: Stack, key: str) -> int:
    """What the broker would carry: escalation's `overrides` outbox records for `key`, handled by the
    segmenter's own consumer handler (the test runs no consumers), their sealed personal fields opened with
    the vault's keys as the segmenter's runner does."""
    async with stack.engine.connect() as c:
        found = [
            ([(k, v.encode()) for k, v in headers], bytes(value))
            for headers, value in await c.execute(
                text("SELECT headers, value FROM escalation.outbox WHERE topic = 'overrides' AND key = :k"),
                {"k": key.encode()},
            )
        ]
        keys = await vault().for_reading(c, {dict(h)["ce_subject"].decode() for h, _ in found})
    envelopes = [decode(headers, value, keys) for headers, value in found]
    async with transaction(stack.engine, "segmenter", "segmenter") as tx:
        await make_handler(Deps(policy=load_policy(), clock=Clock()))(envelopes, tx)
    return len(envelopes)


async def test_a_viewer_sees_campaigns_but_no_forms(stack: Stack) -> None:
    async with stack.signed_in("viewer") as (viewer, csrf):
        r = await viewer.get("/campaigns")
        assert r.status_code == 200, r.text
        assert "<b>baseline</b>" in r.text and "every account" in r.text and 'scope="col"' in r.text
        assert r.text.count("<form") == 1  # sign out only
        assert "New campaign" not in r.text and "Activate" not in r.text
        denied = await viewer.post(
            f"/campaigns?csrf_token={csrf}", data={"campaign_id": "x", "name": "x", "owner": "x"}
        )
        assert denied.status_code == 403
    async with stack.signed_in("collector") as (collector, csrf):
        denied = await collector.post(f"/campaigns/baseline/pause?csrf_token={csrf}", data={"reason": "x"})
        assert denied.status_code == 403


async def test_a_supervisor_creates_activates_and_pauses_a_campaign(stack: Stack) -> None:
    async with stack.signed_in("supervisor") as (sup, csrf):
        page = (await sup.get("/campaigns")).text
        assert "New campaign" in page and 'for="c-id"' in page
        form = {
            "campaign_id": "big-90",
            "name": "Large balances over 90 days",
            "owner": "team-a",
            "goal": "collect 30% this quarter",
            "priority": "10",
            "min_balance": "5,000.00",
            "aging_buckets": ["91-120", "120+"],
            "risk_bands": ["high"],
            "countries": "us, in",
        }
        r = await sup.post(f"/campaigns?csrf_token={csrf}", data=form)
        assert r.status_code == 303, r.text
        page = (await sup.get(r.headers["location"])).text
        assert "campaign big-90 created" in page and "<b>big-90</b>" in page
        assert "balance ≥ 5,000.00 USD" in page and "aging 91-120, 120+" in page and "country US, IN" in page
        [(status, criteria, priority)] = await rows(
            stack, "SELECT status, criteria, priority FROM segmenter.campaigns WHERE campaign_id = 'big-90'"
        )
        assert (status, priority) == ("planned", 10)
        assert {k: v for k, v in criteria.items() if v is not None} == {
            "min_balance_minor": 500000,
            "aging_buckets": ["91-120", "120+"],
            "risk_bands": ["high"],
            "countries": ["US", "IN"],
        }
        # a duplicate id is refused with the segmenter's reason
        r = await sup.post(f"/campaigns?csrf_token={csrf}", data=form)
        assert "already exists" in (await sup.get(r.headers["location"])).text

        r = await sup.post(f"/campaigns/big-90/status?csrf_token={csrf}", data={"to": "active"})
        assert r.status_code == 303
        assert "campaign big-90 is now active" in (await sup.get(r.headers["location"])).text
        r = await sup.post(f"/campaigns/big-90/status?csrf_token={csrf}", data={"to": "active"})
        assert "cannot go from active to active" in (await sup.get(r.headers["location"])).text

        r = await sup.post(
            f"/campaigns/big-90/pause?csrf_token={csrf}",
            data={"reason": "letters being reviewed", "until": ""},
        )
        assert r.status_code == 303
        assert "pause requested" in (await sup.get(r.headers["location"])).text, r.headers["location"]
        # escalation recorded the override as the supervisor, and the segmenter applies it
        assert await rows(
            stack, "SELECT actor, action, reason FROM escalation.audit_log WHERE entity_id = 'big-90'"
        ) == [(SUPERVISOR, "override.pause", "letters being reviewed")]
        [(raw,)] = await rows(
            stack,
            "SELECT value FROM escalation.outbox WHERE topic = 'overrides' AND key = :k",
            k=b"campaign:big-90",
        )
        assert b"letters being reviewed" not in bytes(raw)  # the reason travels sealed
        assert await deliver_overrides(stack, "campaign:big-90") == 1
        page = (await sup.get("/campaigns")).text
        assert f"by {SUPERVISOR}: letters being reviewed" in page and "/campaigns/big-90/resume" in page

    assert await rows(
        stack, "SELECT actor, action FROM segmenter.audit_log WHERE entity_id = 'big-90' ORDER BY seq"
    ) == [(SUPERVISOR, "campaign.create"), (SUPERVISOR, "campaign.status")]
    assert await rows(
        stack, "SELECT paused_by, pause_reason FROM segmenter.campaigns WHERE campaign_id = 'big-90'"
    ) == [(SUPERVISOR, "letters being reviewed")]
