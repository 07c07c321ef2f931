"""The console's incident controls (issue #18 items 6 and 9), on a real console host (PostgreSQL, broker):
the sending halt through the API and the Incident page (audited, supervisors and admins only), locked sign-ins
through the console's /login form and their audited unlock by an admin, revoke-all (every key fails, their
sessions end, the caller's own key kept or not), security events on the page, and the unusual-access alert
raised by reads through the console's own account routes."""

from __future__ import annotations

import contextlib
import dataclasses
import html
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from arrears_console.__main__ import definition as console_definition
from arrears_console.settings import ConsoleSettings
from arrears_shared.audit import list_entries, verify
from arrears_shared.auth import keys, lockout
from arrears_shared.control import halts
from arrears_shared.service import ServiceHost
from auth_support import bearer, issue_key_async

ROLES = ("viewer", "collector", "supervisor", "admin")


@pytest.fixture
async def console(broker: Any, fresh_database_url: Callable[..., str]) -> AsyncIterator[dict[str, Any]]:
    db = fresh_database_url("console_incident")
    settings = ConsoleSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=db,
        runner_poll_timeout_ms=100,
        auth_cookie_secure=False,
        auth_lockout_threshold=3,
        auth_lockout_duration_s=0,
        auth_unusual_access_floor=5,
        auth_failure_slowdown_after=1000,
        auth_failure_block_after=1000,
    )
    host = ServiceHost(dataclasses.replace(console_definition(settings), consumers=(), loops=()))
    app = host.build_app()
    await host.start()
    assert host.ctx is not None
    try:
        async with host.ctx.engine.begin() as conn:
            made = {r: await issue_key_async(conn, r, name=f"inc-{r}") for r in ROLES}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as c:
            yield {"client": c, "keys": made, "app": app, "engine": host.ctx.engine}
    finally:
        await host.stop()


@contextlib.asynccontextmanager
async def signed_in(app: Any, key: str) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as client:
        r = await client.post("/login", data={"api_key": key})
        assert r.status_code == 303, r.text
        page = await client.get("/")
        found = re.search(r"csrf_token=([^\"&]+)", page.text)
        assert found, page.text[:300]
        yield client, html.unescape(found.group(1))


async def audit(engine: Any, action: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        return [e for e in await list_entries(conn, "console") if e["action"] == action]


async def test_halt_and_resume_through_the_api_audited_and_only_for_supervisors_and_admins(
    console: dict[str, Any],
) -> None:
    c, k = console["client"], console["keys"]
    body = {"scope": "campaign", "target": "spring-push", "reason": "wrong amount in the template"}
    for role in ("viewer", "collector"):
        r = await c.post("/admin/sending/halts", json=body, headers=bearer(k[role]))
        assert r.status_code == 403 and "sending.halt" in r.json()["detail"], role
    assert (await c.get("/admin/sending/halts", headers=bearer(k["collector"]))).status_code == 403
    for path in ("/admin/security/locks/0123456789ab/unlock", "/admin/api-keys/revoke-all"):
        asked = {"reason": "not mine to do", "confirm": "REVOKE ALL"}
        r = await c.post(path, json=asked, headers=bearer(k["collector"]))
        assert r.status_code == 403, path
    r = await c.post("/admin/sending/halts", json=body | {"reason": ""}, headers=bearer(k["supervisor"]))
    assert r.status_code == 422  # a reason is required
    r = await c.post("/admin/sending/halts", json=body, headers=bearer(k["supervisor"]))
    assert r.status_code == 201, r.text
    halt = r.json()
    assert (halt["scope"], halt["target"], halt["set_by"]) == ("campaign", "spring-push", "inc-supervisor")
    again = await c.post("/admin/sending/halts", json=body, headers=bearer(k["admin"]))
    assert again.status_code == 409 and halt["halt_id"] in again.json()["detail"]
    r = await c.post(
        "/admin/sending/halts", json={"scope": "all", "reason": "provider breach"}, headers=bearer(k["admin"])
    )
    assert r.status_code == 201
    everything = r.json()
    status = (await c.get("/admin/sending/halts", headers=bearer(k["supervisor"]))).json()
    assert status["halted"] and {h["halt_id"] for h in status["active"]} == {
        halt["halt_id"],
        everything["halt_id"],
    }
    assert halts.HALTED.labels("all")._value.get() == 1  # the gauge the long-halt alert watches
    resume = {"reason": "template fixed"}
    denied = await c.post(
        f"/admin/sending/halts/{halt['halt_id']}/resume", json=resume, headers=bearer(k["collector"])
    )
    assert denied.status_code == 403
    r = await c.post(
        f"/admin/sending/halts/{halt['halt_id']}/resume", json=resume, headers=bearer(k["supervisor"])
    )
    assert r.status_code == 200 and r.json()["cleared_by"] == "inc-supervisor"
    gone = await c.post(
        f"/admin/sending/halts/{halt['halt_id']}/resume", json=resume, headers=bearer(k["supervisor"])
    )
    assert gone.status_code == 404
    [set_entry] = [
        e for e in await audit(console["engine"], "sending.halt") if e["entity_id"] == halt["halt_id"]
    ]
    assert set_entry["actor"] == "inc-supervisor" and set_entry["reason"] == "wrong amount in the template"
    assert set_entry["after"] == {"scope": "campaign", "target": "spring-push", "reason": body["reason"]}
    [resumed] = await audit(console["engine"], "sending.resume")
    assert resumed["entity_id"] == halt["halt_id"] and resumed["reason"] == "template fixed"
    async with console["engine"].connect() as conn:
        assert (await verify(conn, "console")).ok


async def test_the_incident_page_shows_halts_and_sets_and_resumes_them(console: dict[str, Any]) -> None:
    async with signed_in(console["app"], console["keys"]["supervisor"]) as (sup, csrf):
        page = await sup.get("/ops/incident")
        assert page.status_code == 200 and "No halt is in force" in page.text and "Halt now" in page.text
        assert "Locked sign-ins" not in page.text and "Revoke every API key" not in page.text  # admins only
        r = await sup.post(
            f"/ops/incident/halt?csrf_token={csrf}",
            data={"scope": "channel", "target": "sms", "reason": "QUO number hijacked"},
        )
        assert r.status_code == 303 and "halted+channel+sms" in r.headers["location"]
        page = await sup.get("/ops/incident")
        assert "Sending is halted: channel sms" in page.text and "QUO number hijacked" in page.text
        r = await sup.post(
            f"/ops/incident/halt?csrf_token={csrf}",
            data={"scope": "channel", "target": "pigeon", "reason": "x y z"},
        )
        assert "unknown+channel" in r.headers["location"]
        halt_id = re.search(r'name="halt_id" value="([^"]+)"', page.text)
        assert halt_id
        r = await sup.post(
            f"/ops/incident/resume?csrf_token={csrf}",
            data={"halt_id": halt_id.group(1), "reason": "number back"},
        )
        assert r.status_code == 303 and "resumed" in r.headers["location"]
        page = await sup.get("/ops/incident")
        assert "No halt is in force" in page.text and "number back" in page.text  # in the history
    async with signed_in(console["app"], console["keys"]["collector"]) as (col, csrf):
        assert (await col.get("/ops/incident")).status_code == 403
        r = await col.post(f"/ops/incident/halt?csrf_token={csrf}", data={"scope": "all", "reason": "nope"})
        assert r.status_code == 403
    assert [e["actor"] for e in await audit(console["engine"], "sending.halt")] == ["inc-supervisor"]


async def test_console_sign_in_failures_lock_the_key_and_an_admin_unlocks_it(console: dict[str, Any]) -> None:
    app, c, k = console["app"], console["client"], console["keys"]
    target = k["collector"]
    key_id = keys.parse(target) or ""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://console"
    ) as browser:
        for n in range(3):
            r = await browser.post("/login", data={"api_key": f"ark_{key_id}_{n:02d}" + "z" * 41})
            assert r.status_code == 401 and "That key is not valid." in r.text
        r = await browser.post("/login", data={"api_key": target})  # the right key, now locked
        assert r.status_code == 401 and "locked after repeated failed sign-ins" in r.text
    r = await c.get("/accounts", headers=bearer(target))  # the API refuses it too
    assert r.status_code == 401 and "locked" in r.json()["detail"]
    # unlocking is for admins: a supervisor is refused, the locked collector cannot even ask
    for role, status in (("collector", 401), ("supervisor", 403)):
        assert (await c.get("/admin/security/locks", headers=bearer(k[role]))).status_code == status
        denied = await c.post(
            f"/admin/security/locks/{key_id}/unlock", json={"reason": "let me in"}, headers=bearer(k[role])
        )
        assert denied.status_code == status, role
    [lock] = (await c.get("/admin/security/locks", headers=bearer(k["admin"]))).json()
    assert lock["key_id"] == key_id and lock["name"] == "inc-collector" and lock["locked_until"] is None
    async with signed_in(app, k["admin"]) as (adm, csrf):
        page = await adm.get("/ops/incident")
        assert f"ark_{key_id}_…" in page.text and "sign in locked" in page.text
        r = await adm.post(
            f"/ops/incident/unlock?csrf_token={csrf}", data={"key_id": key_id, "reason": "it was me"}
        )
        assert r.status_code == 303 and "unlocked" in r.headers["location"]
    [entry] = await audit(console["engine"], "sign_in.unlock")
    assert entry["actor"] == "inc-admin" and entry["entity_id"] == key_id and entry["reason"] == "it was me"
    assert target not in str(entry)
    async with signed_in(app, target):
        pass  # signs in again
    r = await c.post(
        f"/admin/security/locks/{key_id}/unlock", json={"reason": "again"}, headers=bearer(k["admin"])
    )
    assert r.status_code == 404


async def test_revoke_all_makes_every_key_fail_and_ends_their_sessions(console: dict[str, Any]) -> None:
    app, c, k = console["app"], console["client"], console["keys"]
    async with (
        signed_in(app, k["supervisor"]) as (sup, _),
        signed_in(app, k["admin"]) as (adm, csrf),
    ):
        denied = await c.post(
            "/admin/api-keys/revoke-all",
            json={"reason": "breach", "confirm": "REVOKE ALL"},
            headers=bearer(k["supervisor"]),
        )
        assert denied.status_code == 403
        r = await adm.post(
            f"/ops/incident/revoke-all?csrf_token={csrf}", data={"reason": "breach", "confirm": "no"}
        )
        assert "REVOKE+ALL" in r.headers["location"]
        r = await adm.post(
            f"/ops/incident/revoke-all?csrf_token={csrf}",
            data={"reason": "laptop stolen", "confirm": "REVOKE ALL", "keep_own": "yes"},
        )
        assert r.status_code == 303 and "revoked+3+API+keys" in r.headers["location"], r.headers["location"]
        assert "1+console+sessions+ended" in r.headers["location"]
        for role in ("viewer", "collector", "supervisor"):
            assert (await c.get("/api/me", headers=bearer(k[role]))).status_code == 401, role
        assert (await sup.get("/api/me")).status_code == 401  # the supervisor's session ended with its key
        assert (await adm.get("/api/me")).status_code == 200  # the admin's own key and session were kept
        assert (await c.get("/api/me", headers=bearer(k["admin"]))).status_code == 200
    [entry] = await audit(console["engine"], "api_key.revoke_all")
    assert entry["reason"] == "laptop stolen" and len(entry["after"]["revoked"]) == 3
    assert entry["after"]["kept"] == [keys.parse(k["admin"])]
    # the API, without keeping one's own key: nothing is left (a call without the typed confirmation does nothing)
    body = {"reason": "rotate everything", "keep_own": False}
    r = await c.post("/admin/api-keys/revoke-all", json=body | {"confirm": "yes"}, headers=bearer(k["admin"]))
    assert r.status_code == 422 and "REVOKE ALL" in r.json()["detail"]
    r = await c.post(
        "/admin/api-keys/revoke-all", json=body | {"confirm": "REVOKE ALL"}, headers=bearer(k["admin"])
    )
    assert r.status_code == 200 and r.json()["revoked"] == 1 and r.json()["kept"] == []
    assert (await c.get("/api/me", headers=bearer(k["admin"]))).status_code == 401
    async with console["engine"].connect() as conn:
        assert not await keys.list_keys(conn)
        kinds = {e.kind for e in await lockout.recent_events(conn)}
    assert "keys_revoked_all" in kinds


async def test_bulk_reads_through_the_console_raise_the_unusual_access_alert(console: dict[str, Any]) -> None:
    c, k = console["client"], console["keys"]
    for i in range(4):  # within the floor of 5
        await c.get(f"/api/accounts/OK-{i}/timeline", headers=bearer(k["supervisor"]))
    for i in range(8):
        r = await c.get(f"/api/accounts/BULK-{i}/timeline", headers=bearer(k["collector"]))
        assert r.status_code in (200, 404)
    import asyncio

    for _ in range(100):
        async with console["engine"].connect() as conn:
            found = await lockout.recent_events(conn, kind="unusual_access")
        if found:
            break
        await asyncio.sleep(0.05)
    assert [(e.subject, e.role) for e in found] == [(keys.parse(k["collector"]), "collector")]
    async with signed_in(console["app"], k["admin"]) as (adm, _):
        page = await adm.get("/ops/incident")
        assert "unusual access" in page.text and "inc-collector" in page.text and "6 accounts" in page.text
