"""The segmenter's HTTP API through the real service host, with real API keys: the approval gate, operator
flags, policies and campaigns record the authenticated caller (never a name from the request) in the
decision log, on the timer and in the hash-chained `segmenter.audit_log`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from arrears_shared.db.migrate import upgrade
from auth_support import bearer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .support import account, decisions, deps, handle, run_tick, segmenter_api, timers

NOON_NY = datetime(2026, 4, 15, 16, 0, tzinfo=UTC)
SUPERVISOR = "sup-ana"  # the supervisor key's name: what every record below must show as the actor
DEFAULT_YAML = (
    __import__("importlib.resources").resources.files("arrears_segmenter") / "policies" / "default.yaml"
).read_text()


@pytest.fixture(scope="module")
def api_url(fresh_database_url: Any) -> str:
    url = fresh_database_url("segmenter_api")
    upgrade(url, "segmenter")
    return url


@pytest.fixture(scope="module")
async def api(
    broker: Any, api_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, AsyncEngine, dict[str, str]]]:
    names = {"viewer": None, "collector": None, "supervisor": SUPERVISOR, "admin": None}
    async with segmenter_api(broker.bootstrap_servers, api_url, names) as api:
        yield api


async def audit_entries(engine: AsyncEngine, entity_id: str) -> list[tuple[Any, ...]]:
    async with engine.connect() as c:
        rows = await c.execute(
            text(
                "SELECT actor, role, action, reason FROM segmenter.audit_log WHERE entity_id = :e ORDER BY seq"
            ),
            {"e": entity_id},
        )
        return [tuple(r) for r in rows]


async def test_approvals_record_the_authenticated_actor(api) -> None:
    client, engine, keys = api
    d = deps(NOON_NY)
    await handle(
        engine, d, account("AP-1", balance_minor=2_000_000), account("AP-2", balance_minor=2_000_000)
    )
    await run_tick(engine, d)
    assert (await client.get("/approvals")).status_code == 401
    assert (await client.get("/approvals", headers=bearer(keys["viewer"]))).status_code == 403
    listed = await client.get("/approvals", headers=bearer(keys["collector"]))
    assert listed.status_code == 200
    assert {(h["account_id"], h["step"]) for h in listed.json()} >= {("AP-1", 1), ("AP-2", 1)}
    # a collector may look but not decide
    verdict = {"step": 1, "cycle": 0, "note": "checked the file"}
    denied = await client.post("/approvals/AP-1/approve", json=verdict, headers=bearer(keys["collector"]))
    assert denied.status_code == 403 and "approvals.decide" in denied.json()["detail"]
    sup = bearer(keys["supervisor"])
    spoofed = verdict | {"actor": "someone-else"}  # a name in the body is not who decided
    r = await client.post("/approvals/AP-1/approve", json=spoofed, headers=sup)
    assert r.status_code == 200 and r.json() == {"status": "approved"}, r.text
    r = await client.post(
        "/approvals/AP-2/reject", json={"step": 1, "cycle": 0, "note": "too harsh"}, headers=sup
    )
    assert r.status_code == 200 and r.json() == {"status": "rejected"}, r.text
    assert (await client.post("/approvals/AP-1/approve", json=verdict, headers=sup)).status_code == 404
    # the timer and the decision log name the key's holder
    [t1] = [t for t in await timers(engine, "AP-1") if t["step"] == 1]
    [t2] = [t for t in await timers(engine, "AP-2") if t["step"] == 1]
    assert (t1["state"], t1["approved_by"]) == ("pending", SUPERVISOR)
    assert (t2["state"], t2["approved_by"]) == ("suppressed", SUPERVISOR)
    log = (await client.get("/accounts/AP-1/decisions", headers=sup)).json()
    assert [x["reason"] for x in log if x["outcome"] == "approved"] == [f"{SUPERVISOR}: checked the file"]
    assert [r["reason"] for r in await decisions(engine, "AP-2") if r["outcome"] == "rejected"] == [
        f"{SUPERVISOR}: too harsh"
    ]
    assert not any("someone-else" in x["reason"] for x in log)
    # ... and so does the audit log, readable through the API by a supervisor
    assert await audit_entries(engine, "AP-1") == [
        (SUPERVISOR, "supervisor", "approval.approve", "checked the file")
    ]
    assert await audit_entries(engine, "AP-2") == [(SUPERVISOR, "supervisor", "approval.reject", "too harsh")]
    entries = (await client.get("/audit", params={"entity_id": "AP-1"}, headers=sup)).json()
    assert [(e["actor"], e["action"]) for e in entries] == [(SUPERVISOR, "approval.approve")]
    assert (await client.get("/audit", headers=bearer(keys["collector"]))).status_code == 403


async def test_flags_policies_and_campaigns_record_the_authenticated_actor(api) -> None:
    client, engine, keys = api
    d = deps(NOON_NY)
    await handle(engine, d, account("FL-1"))
    sup = bearer(keys["supervisor"])
    body = {"do_not_contact": True, "reason": "cease letter", "actor": "someone-else"}
    assert (
        await client.post("/accounts/FL-1/flags", json=body, headers=bearer(keys["collector"]))
    ).status_code == 403
    r = await client.post("/accounts/FL-1/flags", json=body, headers=sup)
    assert r.status_code == 200 and r.json()["do_not_contact"] is True, r.text
    [flagged] = [x["reason"] for x in await decisions(engine, "FL-1") if x["rule_id"] == "override.flags"]
    assert flagged.startswith(f"{SUPERVISOR}: do_not_contact False -> True") and "someone-else" not in flagged
    assert await audit_entries(engine, "FL-1") == [(SUPERVISOR, "supervisor", "account.flags", "")]

    r = await client.post(
        "/campaigns", json={"campaign_id": "api-c1", "name": "C", "owner": "team-a"}, headers=sup
    )
    assert r.status_code == 201, r.text
    r = await client.post("/campaigns/api-c1/status", json={"status": "active", "actor": "x"}, headers=sup)
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    actions = [a[2] for a in await audit_entries(engine, "api-c1")]
    assert actions == ["campaign.create", "campaign.status"]
    assert {a[0] for a in await audit_entries(engine, "api-c1")} == {SUPERVISOR}

    v2 = DEFAULT_YAML.replace("version: 1", "version: 2")
    yaml = {"content-type": "application/yaml"}
    assert (
        await client.post("/policies", content=v2, headers=yaml | bearer(keys["collector"]))
    ).status_code == 403
    r = await client.post("/policies", content=v2, headers=yaml | sup)
    assert r.status_code == 201 and r.json()["version"] == 2, r.text
    versions = (await client.get("/policies", headers=bearer(keys["viewer"]))).json()
    assert [(v["version"], v["loaded_by"]) for v in versions if v["version"] == 2] == [(2, SUPERVISOR)]
    async with engine.connect() as c:
        loads = (
            await c.execute(text("SELECT actor, role FROM segmenter.audit_log WHERE action = 'policy.load'"))
        ).all()
    assert [tuple(x) for x in loads] == [(SUPERVISOR, "supervisor")]
    # every entry written above chains: the admin's verification passes
    assert (await client.get("/audit/verify", headers=sup)).status_code == 403
    verified = (await client.get("/audit/verify", headers=bearer(keys["admin"]))).json()
    assert verified["ok"] and verified["entries"] >= 4, verified
