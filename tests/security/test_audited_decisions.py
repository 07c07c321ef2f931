"""Every decision a person makes on any service is audited, attributed to the caller.

- Generated from the services themselves (`arrears security matrix`'s route tables): every state-changing,
  non-public route of every service is served behind the audit middleware, by a service whose schema keeps
  an audit log — so a route that writes no entry of its own is still recorded (the platform scan in
  test_platform_access then checks each successful change for an entry naming the caller).
- Through a real service host (real Postgres, real broker) with two routes added: one that forgets its
  audit entry (covered by the middleware, counted, logged), one that writes its own (not doubled); a
  refused change, an unauthenticated call, a public route and a declared dry run leave nothing.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from arrears_cli.commands.security import _SHAPE_ONLY_ENV
from arrears_responses.__main__ import definition as responses_definition
from arrears_responses.settings import ResponsesSettings
from arrears_shared import topology
from arrears_shared.audit import record
from arrears_shared.audit.coverage import FALLBACK, AuditEveryChange, changes_nothing
from arrears_shared.auth import Principal, public, requires
from arrears_shared.auth.matrix import route_table
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.service import Context, ServiceHost
from auth_support import bearer, issue_key_async
from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import text

CHANGES = {"POST", "PUT", "PATCH", "DELETE"}


def _apps(monkeypatch: pytest.MonkeyPatch) -> dict[str, ServiceHost]:
    for k, v in _SHAPE_ONLY_ENV.items():
        monkeypatch.setenv(k, v)
    out = {}
    for svc in topology.services():
        module = importlib.import_module(f"arrears_{svc.replace('-', '_')}.__main__")
        out[svc] = ServiceHost(module.definition())
    return out


def test_every_change_route_of_every_service_is_behind_the_audit_net(
    monkeypatch: pytest.MonkeyPatch, fresh_database_url: Callable[..., str]
) -> None:
    url = fresh_database_url("audit_cover")
    changes: dict[str, list[str]] = {}
    for svc, host in _apps(monkeypatch).items():
        app = host.build_app()
        routes = [r for r in route_table(svc, app) if r.method in CHANGES and r.permission is not None]
        if not routes:
            continue
        changes[svc] = [f"{r.method} {r.path}" for r in routes]
        assert any(m.cls is AuditEveryChange for m in app.user_middleware), svc
        upgrade(url, svc)
        has_log = asyncio.run(_has_audit_log(url, host.schema))
        assert has_log, f"{svc} takes changes ({changes[svc]}) but its schema keeps no audit log"
    # the services people decide on, and enough routes to know the tables were really read
    assert {"console", "escalation", "segmenter", "responses", "ingest"} <= set(changes)
    assert sum(len(v) for v in changes.values()) >= 40, changes


async def _has_audit_log(url: str, schema: str) -> bool:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return bool(
                (await conn.execute(text(f"SELECT to_regclass('{schema}.audit_log') IS NOT NULL"))).scalar()
            )
    finally:
        await engine.dispose()


# -- the net, on a real service host --------------------------------------------------------------------------


def extra_routes(get_context: Callable[[], Context]) -> APIRouter:
    r = APIRouter()

    @r.post("/test-only/forgets/{thing_id}", status_code=202)
    async def forgets(thing_id: str, who: Principal = Depends(requires("accounts.work"))) -> dict[str, str]:
        return {"changed": thing_id}  # a route that forgot to write its audit entry

    @r.post("/test-only/records/{thing_id}")
    async def records(thing_id: str, who: Principal = Depends(requires("accounts.work"))) -> dict[str, str]:
        ctx = get_context()
        async with ctx.transaction() as tx:
            await record(tx.conn, ctx.schema, who, "thing.change", "thing", thing_id)
        return {"changed": thing_id}

    @r.delete("/test-only/refuses/{thing_id}")
    async def refuses(thing_id: str, who: Principal = Depends(requires("accounts.work"))) -> None:
        raise HTTPException(409, "not now")

    @r.post("/test-only/dry-run", dependencies=[Depends(changes_nothing("a dry run"))])
    async def dry_run(who: Principal = Depends(requires("accounts.work"))) -> dict[str, str]:
        return {}

    @r.post("/test-only/public", dependencies=[Depends(public("a test webhook: changes nothing"))])
    async def anyone() -> dict[str, str]:
        return {}

    return r


@pytest.fixture(scope="module")
async def service(
    broker: Any, fresh_database_url: Callable[..., str]
) -> AsyncIterator[tuple[ServiceHost, httpx.AsyncClient, dict[str, str]]]:
    settings = ResponsesSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=fresh_database_url("audit_net"),
        runner_poll_timeout_ms=100,
    )
    d = responses_definition(settings)
    d.routers = [*d.routers, extra_routes]
    d.consumers = []  # its API only: the consumer group stays with the other tests' services
    host = ServiceHost(d)
    app = host.build_app()
    await host.start()
    assert host.ctx is not None
    async with host.ctx.engine.begin() as conn:
        key = await issue_key_async(conn, "collector", name="maria@example.com")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
        yield host, client, bearer(key)
    await host.stop()


async def entries(host: ServiceHost, request_id: str) -> list[dict[str, Any]]:
    assert host.ctx is not None
    async with host.ctx.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT actor, role, action, entity, entity_id, after FROM responses.audit_log WHERE request_id = :r"
            ),
            {"r": request_id},
        )
        return [dict(r._mapping) for r in rows]


async def test_a_change_its_route_forgot_to_audit_is_recorded_as_the_caller(
    service: tuple[ServiceHost, httpx.AsyncClient, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    host, client, auth = service
    route = "/test-only/forgets/{thing_id}"
    before = FALLBACK.labels(route)._value.get()
    with caplog.at_level(logging.WARNING, logger="arrears_shared.audit.coverage"):
        r = await client.post("/test-only/forgets/T-1", headers=auth | {"x-request-id": "net-1"})
    assert r.status_code == 202
    [entry] = await entries(host, "net-1")
    assert (entry["actor"], entry["role"], entry["action"], entry["entity_id"]) == (
        "maria@example.com",
        "collector",
        "http.post",
        route,
    )
    assert entry["after"] == {"path_params": {"thing_id": "T-1"}, "status": 202}
    assert FALLBACK.labels(route)._value.get() == before + 1
    assert any("not audited by its route" in rec.getMessage() for rec in caplog.records)


async def test_routes_that_audit_themselves_are_not_doubled_and_refusals_leave_nothing(
    service: tuple[ServiceHost, httpx.AsyncClient, dict[str, str]],
) -> None:
    host, client, auth = service
    assert (
        await client.post("/test-only/records/T-2", headers=auth | {"x-request-id": "net-2"})
    ).status_code == 200
    assert [(e["action"], e["actor"]) for e in await entries(host, "net-2")] == [
        ("thing.change", "maria@example.com")
    ]
    assert (
        await client.delete("/test-only/refuses/T-3", headers=auth | {"x-request-id": "net-3"})
    ).status_code == 409
    assert await entries(host, "net-3") == []
    assert (await client.post("/test-only/public", headers={"x-request-id": "net-4"})).status_code == 200
    assert await entries(host, "net-4") == []
    assert (
        await client.post("/test-only/dry-run", headers=auth | {"x-request-id": "net-7"})
    ).status_code == 200
    assert await entries(host, "net-7") == []  # declared to change nothing
    anonymous = await client.post(
        "/test-only/forgets/T-5", headers={"x-request-id": "net-5", "authorization": "Bearer nonsense"}
    )
    assert anonymous.status_code == 401 and await entries(host, "net-5") == []
