"""The escalation API through the real service host: authorization matrix over every endpoint x role,
overrides (audited, published for the segmenter), tasks, the account timeline, and audit tamper detection
(API and `arrears audit verify`)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from arrears_cli.__main__ import app as cli
from arrears_escalation.__main__ import definition
from arrears_escalation.auth.service import hash_key
from arrears_escalation.clock import Clock
from arrears_escalation.deps import Deps
from arrears_escalation.settings import EscalationSettings
from arrears_escalation.tasks.assignment import Agent
from arrears_shared.events import Intent
from arrears_shared.service import ServiceHost
from sqlalchemy import text
from typer.testing import CliRunner

from .test_escalation import handle, reply

T0 = datetime(2026, 7, 1, 12, tzinfo=UTC)
KEYS = {role: f"ark_test_{role}_key_0123456789abcdef" for role in ("viewer", "agent", "supervisor", "admin")}
ROLES = ("none", "viewer", "agent", "supervisor", "admin")
RANK = {r: i for i, r in enumerate(ROLES)}

# The minimum role of every endpoint, written down independently of the code: a new endpoint fails the
# matrix until it is added here.
REQUIRED: dict[tuple[str, str], str] = {
    ("GET", "/cases"): "viewer",
    ("GET", "/cases/{case_id}"): "viewer",
    ("POST", "/cases/{case_id}/close"): "agent",
    ("GET", "/tasks"): "viewer",
    ("GET", "/tasks/{task_id}"): "viewer",
    ("POST", "/tasks/{task_id}/assign"): "agent",
    ("POST", "/tasks/{task_id}/complete"): "agent",
    ("POST", "/accounts/{account_id}/pause"): "agent",
    ("POST", "/accounts/{account_id}/resume"): "agent",
    ("POST", "/accounts/{account_id}/snooze"): "agent",
    ("POST", "/accounts/{account_id}/steps/{step}/skip"): "agent",
    ("POST", "/accounts/{account_id}/steps/{step}/approve"): "supervisor",
    ("POST", "/accounts/{account_id}/send-now"): "agent",
    ("POST", "/accounts/{account_id}/channel-preference"): "agent",
    ("POST", "/accounts/{account_id}/dispute"): "agent",
    ("POST", "/accounts/{account_id}/do-not-contact"): "agent",
    ("POST", "/accounts/{account_id}/notes"): "agent",
    ("POST", "/campaigns/{campaign_id}/pause"): "supervisor",
    ("POST", "/campaigns/{campaign_id}/resume"): "supervisor",
    ("GET", "/accounts/{account_id}/timeline"): "viewer",
    ("GET", "/audit"): "supervisor",
    ("GET", "/audit/verify"): "admin",
    ("POST", "/admin/api-keys"): "admin",
    ("DELETE", "/admin/api-keys/{name}"): "admin",
    ("GET", "/collection-metrics"): "viewer",
    ("POST", "/collection-metrics/snapshot"): "admin",
}
BODIES: dict[str, dict[str, Any]] = {
    "/cases/{case_id}/close": {"note": "done"},
    "/tasks/{task_id}/assign": {"assignee": "agent-user"},  # an agent may assign to themselves
    "/tasks/{task_id}/complete": {"outcome": "done"},
    "/accounts/{account_id}/snooze": {"until": "2026-08-01T00:00:00Z"},
    "/accounts/{account_id}/send-now": {"step": 1},
    "/accounts/{account_id}/channel-preference": {"channels": ["email"]},
    "/accounts/{account_id}/notes": {"body": "called, no answer"},
    "/admin/api-keys": {"name": "matrix-made", "role": "viewer"},
}
QUERY: dict[str, dict[str, str]] = {
    "/collection-metrics": {"from": "2026-01-01", "to": "2026-01-02"},
    "/collection-metrics/snapshot": {"day": "2026-01-01"},
}
UNAUTHENTICATED = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}


@pytest.fixture(scope="module")
async def api(broker: Any, escalation_url: str) -> AsyncIterator[tuple[ServiceHost, httpx.AsyncClient, Deps]]:
    spec = ",".join(f"{role}-user:{role}:{hash_key(k)}" for role, k in KEYS.items())
    settings = EscalationSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=escalation_url,
        escalation_api_keys=spec,
        runner_poll_timeout_ms=100,
        escalation_tick_s=3600,
    )
    deps = Deps.from_settings(settings)
    deps.clock = Clock(fixed=T0)
    deps.agents = [Agent(id="agent-user", team="collectors")]
    host = ServiceHost(definition(settings, deps))
    app = host.build_app()
    await host.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://esc") as client:
        yield host, client, deps
    await host.stop()


def auth(role: str) -> dict[str, str]:
    return {} if role == "none" else {"Authorization": f"Bearer {KEYS[role]}"}


async def test_authorization_matrix_every_endpoint_by_every_role(api) -> None:
    host, client, _ = api
    paths = host.build_app().openapi()["paths"]  # every documented endpoint
    routes = {(m.upper(), p) for p, ops in paths.items() if p not in UNAUTHENTICATED for m in ops}
    assert routes == set(REQUIRED), f"endpoints without a row in the matrix: {routes ^ set(REQUIRED)}"
    outcomes: dict[str, int] = {}
    for (method, path), needed in sorted(REQUIRED.items()):
        url = re.sub(r"\{step\}", "1", re.sub(r"\{(\w+)\}", r"matrix-\1", path))
        for role in ROLES:
            r = await client.request(
                method, url, json=BODIES.get(path, {}), params=QUERY.get(path), headers=auth(role)
            )
            allowed = RANK[role] >= RANK[needed]
            outcomes[f"{method} {path} {role}"] = r.status_code
            if role == "none":
                assert r.status_code == 401, (method, path, r.text)
            elif allowed:
                assert r.status_code not in (401, 403), (method, path, role, r.status_code, r.text)
            else:
                assert r.status_code == 403, (method, path, role, r.status_code, r.text)
    assert len(outcomes) == len(REQUIRED) * len(ROLES)
    bad = await client.get("/cases", headers={"Authorization": "Bearer ark_not_a_real_key"})
    assert bad.status_code == 401


async def test_overrides_are_audited_and_published_for_the_segmenter(api) -> None:
    host, client, _ = api
    agent, sup = auth("agent"), auth("supervisor")
    r = await client.post(
        "/accounts/OV-1/snooze", json={"until": "2026-07-10T00:00:00Z", "reason": "travel"}, headers=agent
    )
    assert r.status_code == 202, r.text
    snooze = r.json()
    # send-now with a gate override: agents may not, supervisors only with a reason
    body = {"step": 2, "gate_override": True, "reason": ""}
    assert (await client.post("/accounts/OV-1/send-now", json=body, headers=agent)).status_code == 403
    assert (await client.post("/accounts/OV-1/send-now", json=body, headers=sup)).status_code == 422
    body["reason"] = "customer asked for the final notice by text tonight"
    assert (await client.post("/accounts/OV-1/send-now", json=body, headers=sup)).status_code == 202
    assert (
        await client.post("/accounts/OV-1/snooze", json={"reason": "x"}, headers=agent)
    ).status_code == 422
    async with host.ctx.engine.connect() as c:
        rows = (
            await c.execute(
                text("SELECT headers, value FROM escalation.outbox WHERE topic='overrides' ORDER BY id")
            )
        ).all()
        audit = (
            await c.execute(
                text(
                    "SELECT actor, role, action, reason FROM escalation.audit_log WHERE entity_id='OV-1' ORDER BY seq"
                )
            )
        ).all()
    events = [json.loads(bytes(v)) for _, v in rows if json.loads(bytes(v))["account_id"] == "OV-1"]
    assert [(e["action"], e["actor"], e["role"]) for e in events] == [
        ("snooze", "agent-user", "agent"),
        ("send_now", "supervisor-user", "supervisor"),
    ]
    assert events[0]["override_id"] == snooze["override_id"] and events[0]["until"].startswith("2026-07-10")
    assert events[1]["gate_override"] is True and events[1]["step"] == 2
    ce_ids = [dict(h)["ce_id"] for h, v in rows if json.loads(bytes(v))["account_id"] == "OV-1"]
    assert ce_ids[0] == f"override:{snooze['override_id']}"
    assert [tuple(a) for a in audit] == [
        ("agent-user", "agent", "override.snooze", "travel"),
        ("supervisor-user", "supervisor", "override.send_now", body["reason"]),
    ]


async def test_tasks_and_timeline(api, engine) -> None:
    host, client, deps = api
    await handle(engine, deps, reply("TL-1", Intent.CALLBACK_REQUEST, rid="tl-1"))
    viewer, agent, sup = auth("viewer"), auth("agent"), auth("supervisor")
    [task] = (await client.get("/tasks", params={"account_id": "TL-1"}, headers=viewer)).json()
    assert task["assignee"] == "agent-user" and task["kind"] == "call_back"
    other = {"assignee": "someone-else"}
    assert (
        await client.post(f"/tasks/{task['task_id']}/assign", json=other, headers=agent)
    ).status_code == 403
    assert (await client.post(f"/tasks/{task['task_id']}/assign", json=other, headers=sup)).status_code == 200
    done = await client.post(
        f"/tasks/{task['task_id']}/complete", json={"outcome": "called back"}, headers=agent
    )
    assert done.json()["status"] == "done"
    again = await client.post(f"/tasks/{task['task_id']}/complete", json={"outcome": "x"}, headers=agent)
    assert again.status_code == 409
    assert (
        await client.post("/accounts/TL-1/notes", json={"body": "plan agreed"}, headers=agent)
    ).status_code == 201
    assert (
        await client.post("/accounts/TL-1/pause", json={"reason": "plan"}, headers=agent)
    ).status_code == 202
    items = (await client.get("/accounts/TL-1/timeline", headers=viewer)).json()
    kinds = [i["kind"] for i in items]
    for k in (
        "message_in",
        "case.opened",
        "task.created",
        "note",
        "audit.task.assign",
        "audit.task.complete",
        "audit.override.pause",
    ):
        assert k in kinds, (k, kinds)
    assert [i["at"] for i in items] == sorted(i["at"] for i in items)


async def test_audit_log_is_append_only_and_tampering_is_detected(api, engine, escalation_url) -> None:
    host, client, _ = api
    admin = auth("admin")
    for i in range(3):
        await client.post(f"/accounts/AU-{i}/dispute", json={"reason": f"r{i}"}, headers=auth("agent"))
    ok = (await client.get("/audit/verify", headers=admin)).json()
    assert ok["ok"] and ok["entries"] >= 3
    runner = CliRunner()
    res = await asyncio.to_thread(runner.invoke, cli, ["audit", "verify", "--database-url", escalation_url])
    assert res.exit_code == 0, res.output
    head = re.search(r"head: (\d+:[0-9a-f]{64})", res.output).group(1)  # type: ignore[union-attr]
    # the table refuses changes through normal SQL
    async with engine.connect() as c:
        with pytest.raises(Exception, match="append-only"):
            await c.execute(text("UPDATE escalation.audit_log SET reason = 'x' WHERE seq = 1"))
        await c.rollback()
    # someone with owner rights disables the trigger and edits an entry
    async with engine.begin() as c:
        await c.execute(text("ALTER TABLE escalation.audit_log DISABLE TRIGGER audit_log_no_change"))
        await c.execute(
            text("UPDATE escalation.audit_log SET reason = 'nothing to see' WHERE entity_id = 'AU-1'")
        )
    bad = (await client.get("/audit/verify", headers=admin)).json()
    assert not bad["ok"] and any("edited" in p for p in bad["problems"]), bad
    res = await asyncio.to_thread(runner.invoke, cli, ["audit", "verify", "--database-url", escalation_url])
    assert res.exit_code == 1 and "edited" in res.output
    # ... or deletes one in the middle, or the newest (caught with the anchor)
    async with engine.begin() as c:
        await c.execute(text("DELETE FROM escalation.audit_log WHERE entity_id = 'AU-0'"))
        await c.execute(
            text("DELETE FROM escalation.audit_log WHERE seq = (SELECT max(seq) FROM escalation.audit_log)")
        )
        await c.execute(text("ALTER TABLE escalation.audit_log ENABLE TRIGGER audit_log_no_change"))
    res = await asyncio.to_thread(
        runner.invoke, cli, ["audit", "verify", "--database-url", escalation_url, "--anchor", head]
    )
    assert res.exit_code == 1
    assert "missing (deleted)" in res.output and "truncated" in res.output, res.output
