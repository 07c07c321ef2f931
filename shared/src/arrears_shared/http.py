"""FastAPI app factory: every service gets `/healthz`, `/readyz` and `/metrics` the same way.

- `/healthz` (liveness) never touches the database or broker, so an outage does not restart every pod;
  it fails only when a consumer is stuck (partitions assigned, lag > 0, no progress for
  `ARREARS_RUNNER_STUCK_AFTER_S`) or a background task has died.
- `/readyz` checks the database, the broker and that each consumer joined its group; extra checks can be
  registered by the service (their detail is shown, e.g. ingest's degraded sheet source).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

Check = Callable[[], Awaitable[tuple[bool, Any]]]


@dataclass
class Health:
    liveness: dict[str, Callable[[], tuple[bool, Any]]] = field(default_factory=dict)
    readiness: dict[str, Check] = field(default_factory=dict)

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        names = list(self.readiness)
        results = await asyncio.gather(*(self._run(self.readiness[n]) for n in names))
        detail = {n: {"ok": ok, "detail": d} for n, (ok, d) in zip(names, results, strict=True)}
        return all(ok for ok, _ in results), detail

    @staticmethod
    async def _run(check: Check) -> tuple[bool, Any]:
        try:
            return await asyncio.wait_for(check(), timeout=2.0)
        except Exception as e:
            return False, f"{type(e).__name__}: {e}"[:300]

    def live(self) -> tuple[bool, dict[str, Any]]:
        detail = {}
        ok = True
        for name, check in self.liveness.items():
            good, d = check()
            ok = ok and good
            detail[name] = {"ok": good, "detail": d}
        return ok, detail


def create_app(service: str, health: Health, routers: Sequence[APIRouter] = (), **fastapi_kw: Any) -> FastAPI:
    app = FastAPI(title=f"Arrears {service}", **fastapi_kw)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> JSONResponse:
        ok, detail = health.live()
        return JSONResponse(
            {"status": "ok" if ok else "failing", "checks": detail}, status_code=200 if ok else 503
        )

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        ok, detail = await health.ready()
        return JSONResponse(
            {"status": "ready" if ok else "not_ready", "checks": detail}, status_code=200 if ok else 503
        )

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for r in routers:
        app.include_router(r)
    return app
