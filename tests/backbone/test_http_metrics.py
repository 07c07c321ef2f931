"""`arrears_http_request_seconds` from the shared app factory: labelled with the route template (never the raw
path), also for requests the gate refuses before routing; unknown paths share one `unmatched` label."""

from __future__ import annotations

import httpx
from arrears_shared.auth import Principal, public, requires
from arrears_shared.auth.gate import Authenticator
from arrears_shared.http import Health, create_app
from arrears_shared.settings import AuthSettings
from fastapi import APIRouter, Depends
from prometheus_client import REGISTRY

from .support import unique


def count(service: str, method: str, route: str, status: str) -> float:
    labels = {"service": service, "method": method, "route": route, "status": status}
    return REGISTRY.get_sample_value("arrears_http_request_seconds_count", labels) or 0.0


def routes() -> APIRouter:
    r = APIRouter()

    @r.get("/items/{item_id}", dependencies=[Depends(public("test route"))])
    async def item(item_id: str) -> dict[str, str]:
        return {"item": item_id}

    @r.get("/accounts/{account_id}")
    async def account(account_id: str, who: Principal = Depends(requires("accounts.read"))) -> dict[str, str]:
        return {"account": account_id}

    return r


async def test_requests_are_timed_by_route_template() -> None:
    service = unique("http")
    app = create_app(service, Health(), [routes()], authenticator=Authenticator(AuthSettings()))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        for item in ("a1", "b2", "c3"):
            assert (await client.get(f"/items/{item}")).status_code == 200
        assert (await client.get("/accounts/ACC-1")).status_code == 401  # refused by the gate, before routing
        assert (await client.get("/no/such/path")).status_code in (401, 404)
        assert (await client.get("/healthz")).status_code == 200

    assert count(service, "GET", "/items/{item_id}", "200") == 3
    assert count(service, "GET", "/accounts/{account_id}", "401") == 1
    assert count(service, "GET", "/healthz", "200") == 1
    unmatched = count(service, "GET", "unmatched", "401") + count(service, "GET", "unmatched", "404")
    assert unmatched == 1
    routes_seen = {
        s.labels["route"]
        for family in REGISTRY.collect()
        for s in family.samples
        if s.name == "arrears_http_request_seconds_count" and s.labels["service"] == service
    }
    assert routes_seen == {"/items/{item_id}", "/accounts/{account_id}", "/healthz", "unmatched"}
    bucket = REGISTRY.get_sample_value(
        "arrears_http_request_seconds_bucket",
        {"service": service, "method": "GET", "route": "/items/{item_id}", "status": "200", "le": "5.0"},
    )
    assert bucket == 3  # 5 s is a bucket bound: the alert's threshold is measured, not interpolated


async def test_a_request_cancelled_before_its_response_counts_as_499_not_500() -> None:
    import asyncio

    from arrears_shared.http import RequestMetrics

    service = unique("http")

    async def hangs(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        await asyncio.sleep(60)

    async def fails(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("handler bug")

    async def noop_send(message) -> None:  # type: ignore[no-untyped-def]
        return None

    scope = {"type": "http", "method": "GET", "path": "/slow", "root_path": "", "headers": []}
    task = asyncio.create_task(RequestMetrics(hangs, service=service, routes=[])(scope, None, noop_send))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    task.cancel()  # the client went away / the server shuts down
    try:
        await task
    except asyncio.CancelledError:
        pass
    assert count(service, "GET", "unmatched", "499") == 1
    try:
        await RequestMetrics(fails, service=service, routes=[])(scope, None, noop_send)  # type: ignore[arg-type]
    except RuntimeError:
        pass
    assert count(service, "GET", "unmatched", "500") == 1
