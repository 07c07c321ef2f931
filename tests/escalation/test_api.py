"""The escalation API through the real service host: the authorisation matrix driven by what each operation
declares (every documented operation x every role, with real API keys in `iam`), overrides (audited,
published for the segmenter, actor = the key's name), tasks (own vs anyone's), the account timeline, and
audit tamper detection (API and `arrears audit verify`)."""

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
from arrears_escalation.deps import Deps
from arrears_escalation.settings import EscalationSettings
from arrears_escalation.tasks.assignment import Agent
from arrears_shared.auth.roles import PERMISSIONS, ROLE_PERMISSIONS, ROLES, roles_with
from arrears_shared.clock import Clock
from arrears_shared.events import Intent
from arrears_shared.service import ServiceHost
from arrears_shared.vault import cipher
from arrears_shared.vault.keys import vault
from auth_support import bearer, issue_key_async
from sqlalchemy import text
from typer.testing import CliRunner

from .test_escalation import handle, reply

T0 = datetime(2026, 7, 1, 12, tzinfo=UTC)
PUBLIC = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}
METHODS = {"get", "post", "put", "patch", "delete"}


def user(role: str) -> str:
    """The name of the test key holding `role` (what the audit log records as the actor)."""
    return f"{role}-user"


# Request bodies and queries valid enough to get past validation, so the status shows the access decision.
BODIES: dict[str, Any] = {
    "/cases/{case_id}/close": {"note": "done"},
    "/tasks/{task_id}/complete": {"outcome": "done"},
    "/accounts/{account_id}/snooze": {"until": "2026-08-01T00:00:00Z"},
    "/accounts/{account_id}/send-now": {"step": 1},
    "/accounts/{account_id}/channel-preference": {"channels": ["email"]},
    "/accounts/{account_id}/notes": {"body": "called, no answer"},
}
QUERY: dict[str, dict[str, str]] = {
    "/collection-metrics": {"from": "2026-01-01", "to": "2026-01-02"},
    "/collection-metrics/snapshot": {"day": "2026-01-01"},
}


def body_for(path: str, role: str) -> Any:
    if path == "/tasks/{task_id}/assign":  # to themselves: what a collector may do without tasks.assign
        return {"assignee": user(role)}
    return BODIES.get(path, {})


@pytest.fixture(scope="module")
async def api(
    broker: Any, escalation_url: str
) -> AsyncIterator[tuple[ServiceHost, httpx.AsyncClient, Deps, dict[str, str]]]:
    settings = EscalationSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=escalation_url,
        runner_poll_timeout_ms=100,
        escalation_tick_s=3600,
    )
    deps = Deps.from_settings(settings)
    deps.clock = Clock(fixed=T0)
    deps.agents = [Agent(id=user("collector"), team="collectors")]
    host = ServiceHost(definition(settings, deps))
    app = host.build_app()
    await host.start()
    assert host.ctx is not None
    async with host.ctx.engine.begin() as conn:
        keys = {role: await issue_key_async(conn, role, name=user(role)) for role in ROLES}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://esc") as client:
        yield host, client, deps, keys
    await host.stop()


def operations(app: Any) -> dict[tuple[str, str], dict[str, Any]]:
    paths = app.openapi()["paths"]
    return {(m.upper(), p): op for p, ops in paths.items() for m, op in ops.items() if m in METHODS}


async def test_authorization_matrix_every_operation_by_every_role(api) -> None:
    """For every documented operation: no credential -> 401, a role without the declared permission -> 403,
    a role with it -> neither (nor a server error)."""
    host, client, _, keys = api
    ops = operations(host.build_app())
    undeclared = [k for k, op in ops.items() if "x-arrears-permission" not in op]
    assert not undeclared, f"operations without a declared access: {undeclared}"
    public = {k for k, op in ops.items() if op["x-arrears-permission"] is None}
    assert public == PUBLIC, public
    # the keys API lives on the console now, not here
    assert not any(p.startswith("/admin") for _, p in ops), sorted(ops)
    guarded = {k: op for k, op in ops.items() if k not in public}
    assert len(guarded) >= 20, sorted(guarded)
    outcomes: dict[str, int] = {}
    for (method, path), op in sorted(guarded.items()):
        permission = op["x-arrears-permission"]
        assert permission in PERMISSIONS, (method, path, permission)
        assert op["x-arrears-roles"] == list(roles_with(permission)), (method, path)
        url = re.sub(r"\{step\}", "1", re.sub(r"\{(\w+)\}", r"matrix-\1", path))
        anonymous = await client.request(method, url, json=body_for(path, "none"), params=QUERY.get(path))
        assert anonymous.status_code == 401, (method, path, anonymous.text)
        for role in ROLES:
            r = await client.request(
                method, url, json=body_for(path, role), params=QUERY.get(path), headers=bearer(keys[role])
            )
            outcomes[f"{method} {path} {role}"] = r.status_code
            if permission in ROLE_PERMISSIONS[role]:
                assert r.status_code not in (401, 403), (method, path, role, r.status_code, r.text)
                assert r.status_code < 500, (method, path, role, r.status_code, r.text)
            else:
                assert r.status_code == 403, (method, path, role, r.status_code, r.text)
                assert permission in r.json()["detail"], r.text  # the 403 names what is missing
    assert len(outcomes) == len(guarded) * len(ROLES)
    # a few decisions written down independently of the table, so a loosened table cannot pass unnoticed
    expect = {
        ("GET", "/accounts/{account_id}/timeline"): "collector",
        ("POST", "/accounts/{account_id}/steps/{step}/approve"): "supervisor",
        ("GET", "/audit"): "supervisor",
        ("GET", "/audit/verify"): "admin",
        ("POST", "/collection-metrics/snapshot"): "admin",
    }
    for (method, path), lowest in expect.items():
        person_roles = [r for r in ROLES if r != "service"]
        allowed = person_roles[person_roles.index(lowest) :]
        for role in person_roles:
            code = outcomes[f"{method} {path} {role}"]
            assert (code != 403) == (role in allowed), (method, path, role, code)
    for role in ("viewer", "service"):  # neither sees or touches an account's work
        assert outcomes[f"GET /accounts/{{account_id}}/timeline {role}"] == 403
        assert outcomes[f"POST /accounts/{{account_id}}/pause {role}"] == 403
    for bad in ({"Authorization": "Bearer ark_not_a_real_key"}, {"Authorization": "Basic eDp5"}):
        assert (await client.get("/cases", headers=bad)).status_code == 401
    for method, path in PUBLIC:
        assert (await client.request(method, path)).status_code != 401, path


async def test_overrides_are_audited_and_published_for_the_segmenter(api) -> None:
    host, client, _, keys = api
    collector, sup = bearer(keys["collector"]), bearer(keys["supervisor"])
    r = await client.post(
        "/accounts/OV-1/snooze", json={"until": "2026-07-10T00:00:00Z", "reason": "travel"}, headers=collector
    )
    assert r.status_code == 202, r.text
    snooze = r.json()
    # send-now: collectors may not; a gate override needs approvals.decide and always a reason
    body = {"step": 2, "gate_override": True, "reason": ""}
    assert (await client.post("/accounts/OV-1/send-now", json=body, headers=collector)).status_code == 403
    assert (await client.post("/accounts/OV-1/send-now", json=body, headers=sup)).status_code == 422
    body["reason"] = "customer asked for the final notice by text tonight"
    assert (await client.post("/accounts/OV-1/send-now", json=body, headers=sup)).status_code == 202
    snooze_without_until = await client.post("/accounts/OV-1/snooze", json={"reason": "x"}, headers=collector)
    assert snooze_without_until.status_code == 422
    # the actor comes from the credential: a name in the body is ignored
    spoof = {"reason": "plan", "actor": "someone-else", "role": "admin"}
    assert (await client.post("/accounts/OV-1/pause", json=spoof, headers=collector)).status_code == 202
    assert host.ctx is not None
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
    mine = [(h, json.loads(bytes(v))) for h, v in rows if json.loads(bytes(v))["account_id"] == "OV-1"]
    events = [e for _, e in mine]
    assert [(e["action"], e["actor"], e["role"]) for e in events] == [
        ("snooze", user("collector"), "collector"),
        ("send_now", user("supervisor"), "supervisor"),
        ("pause", user("collector"), "collector"),
    ]
    assert events[0]["override_id"] == snooze["override_id"] and events[0]["until"].startswith("2026-07-10")
    assert events[1]["gate_override"] is True and events[1]["step"] == 2
    assert dict(mine[0][0])["ce_id"] == f"override:{snooze['override_id']}"
    # the reason is stored sealed with the account's data key (test_sealed.py); opened, it is what was given
    assert all(cipher.is_sealed(a.reason) for a in audit)
    async with host.ctx.engine.connect() as c:
        key = (await vault().for_reading(c, ["OV-1"]))["OV-1"]
    assert [(a.actor, a.role, a.action, cipher.open_value(key, "OV-1", a.reason)) for a in audit] == [
        (user("collector"), "collector", "override.snooze", "travel"),
        (user("supervisor"), "supervisor", "override.send_now", body["reason"]),
        (user("collector"), "collector", "override.pause", "plan"),
    ]


async def test_tasks_own_or_anyone_and_timeline(api, engine) -> None:
    host, client, deps, keys = api
    await handle(engine, deps, reply("TL-1", Intent.CALLBACK_REQUEST, rid="tl-1"))
    viewer, collector, sup = bearer(keys["viewer"]), bearer(keys["collector"]), bearer(keys["supervisor"])
    assert (await client.get("/tasks", params={"account_id": "TL-1"}, headers=viewer)).status_code == 403
    [task] = (await client.get("/tasks", params={"account_id": "TL-1"}, headers=collector)).json()
    assert task["assignee"] == user("collector") and task["kind"] == "call_back"
    tid = task["task_id"]
    # a collector may only assign to themselves; tasks.assign (supervisor) assigns to anyone
    other = {"assignee": "someone-else"}
    denied = await client.post(f"/tasks/{tid}/assign", json=other, headers=collector)
    assert denied.status_code == 403 and "yourself" in denied.json()["detail"]
    assert (await client.post(f"/tasks/{tid}/assign", json=other, headers=sup)).status_code == 200
    # ... and may not complete someone else's task
    theirs = await client.post(f"/tasks/{tid}/complete", json={"outcome": "x"}, headers=collector)
    assert theirs.status_code == 403, theirs.text
    assert (await client.get(f"/tasks/{tid}", headers=collector)).json()["status"] == "open"
    # claiming it back (assigning to themselves) is theirs to do; then they complete it
    claim = await client.post(f"/tasks/{tid}/assign", json={"assignee": user("collector")}, headers=collector)
    assert claim.status_code == 200 and claim.json()["assignee"] == user("collector")
    done = await client.post(f"/tasks/{tid}/complete", json={"outcome": "called back"}, headers=collector)
    assert done.status_code == 200 and done.json()["status"] == "done"
    again = await client.post(f"/tasks/{tid}/complete", json={"outcome": "x"}, headers=collector)
    assert again.status_code == 409
    note = await client.post("/accounts/TL-1/notes", json={"body": "plan agreed"}, headers=collector)
    assert note.status_code == 201
    pause = await client.post("/accounts/TL-1/pause", json={"reason": "plan"}, headers=collector)
    assert pause.status_code == 202
    assert (await client.get("/accounts/TL-1/timeline", headers=viewer)).status_code == 403
    items = (await client.get("/accounts/TL-1/timeline", headers=collector)).json()
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
    async with engine.connect() as c:
        actors = (
            await c.execute(
                text(
                    "SELECT action, actor, role FROM escalation.audit_log WHERE entity_id = :t ORDER BY seq"
                ),
                {"t": tid},
            )
        ).all()
    assert [tuple(a) for a in actors] == [
        ("task.assign", user("supervisor"), "supervisor"),
        ("task.assign", user("collector"), "collector"),
        ("task.complete", user("collector"), "collector"),
    ]


async def test_audit_log_is_append_only_and_tampering_is_detected(api, engine, escalation_url) -> None:
    host, client, _, keys = api
    admin = bearer(keys["admin"])
    for i in range(3):
        r = await client.post(
            f"/accounts/AU-{i}/dispute", json={"reason": f"r{i}"}, headers=bearer(keys["collector"])
        )
        assert r.status_code == 202, r.text
    assert (await client.get("/audit/verify", headers=bearer(keys["supervisor"]))).status_code == 403
    ok = (await client.get("/audit/verify", headers=admin)).json()
    assert ok["ok"] and ok["entries"] >= 3
    listed = (await client.get("/audit", params={"entity_id": "AU-1"}, headers=admin)).json()
    assert [(e["actor"], e["action"]) for e in listed] == [(user("collector"), "override.mark_dispute")]
    runner = CliRunner()

    def verify(*extra: str) -> Any:
        return runner.invoke(cli, ["audit", "verify", "--database-url", escalation_url, *extra])

    res = await asyncio.to_thread(verify)
    assert res.exit_code == 0, res.output
    assert "audit logs OK" in res.output, res.output
    m = re.search(r"^escalation: entries (\d+), head (escalation=\d+:[0-9a-f]{64})$", res.output, re.M)
    assert m is not None, res.output
    assert int(m.group(1)) == ok["entries"]
    head = m.group(2)
    res = await asyncio.to_thread(verify, "--service", "escalation", "--anchor", head)
    assert res.exit_code == 0, res.output
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
    res = await asyncio.to_thread(verify)
    assert res.exit_code == 1 and "edited" in res.output and "TAMPERED escalation" in res.output, res.output
    # ... or deletes one in the middle, or the newest (caught with the anchor)
    async with engine.begin() as c:
        await c.execute(text("DELETE FROM escalation.audit_log WHERE entity_id = 'AU-0'"))
        await c.execute(
            text("DELETE FROM escalation.audit_log WHERE seq = (SELECT max(seq) FROM escalation.audit_log)")
        )
        await c.execute(text("ALTER TABLE escalation.audit_log ENABLE TRIGGER audit_log_no_change"))
    res = await asyncio.to_thread(verify, "--anchor", head)
    assert res.exit_code == 1
    assert "missing (deleted)" in res.output and "truncated" in res.output, res.output


async def test_a_promise_taken_by_a_person_is_tracked_published_and_audited(api) -> None:
    host, client, _, keys = api
    collector, viewer = bearer(keys["collector"]), bearer(keys["viewer"])
    body = {"due_date": "2026-07-15", "amount_minor": 25_000, "reason": "on the phone"}
    assert (await client.post("/accounts/PR-1/promises", json=body, headers=viewer)).status_code == 403
    r = await client.post("/accounts/PR-1/promises", json=body | {"actor": "spoof"}, headers=collector)
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["action"] == "record_promise"
    again = await client.post(
        "/accounts/PR-1/promises", json=body | {"due_date": "2026-07-20"}, headers=collector
    )
    assert again.status_code == 202
    listed = (await client.get("/accounts/PR-1/promises", headers=collector)).json()
    pairs = sorted((p["due_date"], p["status"]) for p in listed)  # the test clock is fixed: same made_at
    assert pairs == [("2026-07-15", "superseded"), ("2026-07-20", "pending")]
    assert (await client.get("/accounts/PR-1/promises", headers=viewer)).status_code == 403
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        events = [
            json.loads(bytes(v))
            for (v,) in (
                await c.execute(
                    text("SELECT value FROM escalation.outbox WHERE topic='overrides' ORDER BY id")
                )
            ).all()
        ]
        collector_of = (
            (
                await c.execute(
                    text("SELECT DISTINCT collector FROM escalation.promises WHERE account_id='PR-1'")
                )
            )
            .scalars()
            .all()
        )
        audit = (
            await c.execute(
                text("SELECT actor, action FROM escalation.audit_log WHERE entity_id='PR-1' ORDER BY seq")
            )
        ).all()
    mine = [e for e in events if e["account_id"] == "PR-1"]
    assert [(e["action"], e["promise_date"], e["promise_amount_minor"], e["actor"]) for e in mine] == [
        ("record_promise", "2026-07-15", 25_000, user("collector")),
        ("record_promise", "2026-07-20", 25_000, user("collector")),
    ]
    assert collector_of == [user("collector")]
    assert [tuple(a) for a in audit] == [(user("collector"), "override.record_promise")] * 2
