"""`GET /delivery/status`: a dispatcher's provider health, read-only (`providers.read`), for the console's
Providers page and for monitoring.

Per route (primary provider, fallback): the circuit breaker of the replica that answers (breakers are per
replica), the shared limiter's schedule (how far ahead it is booked: a paced backlog or a provider's Retry-After) and, for the primary
route, a route pause shared by every replica (the provider said its quota is used up). Per dispatcher (all
replicas, from its tables): the daily quota used over the rolling 24 hours against the limit, the deliveries
by state, the sends in flight (`sending`, younger than the in-doubt age) and the in-doubt sends awaiting
reconciliation (`sending`, older). Nothing here holds personal data: no address, no message.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..auth import requires
from ..service import Context, RouterFactory
from .engine import DeliveryEngine
from .routes import FALLBACK, PRIMARY


class BreakerStatus(BaseModel):
    state: Literal["closed", "open", "half_open"]
    failure_threshold: int
    cooldown_s: float


class RouteStatus(BaseModel):
    route: Literal["primary", "fallback"]
    provider: str
    breaker: BreakerStatus = Field(description="This replica's circuit breaker for the route")
    rate_per_s: float
    limiter_ahead_s: float | None = Field(
        None,
        description="How far the shared limiter's schedule runs ahead of now (a backlog being paced, or a provider Retry-After)",
    )
    paused_until: datetime | None = Field(
        None, description="Route paused for every replica until then (provider quota used up)"
    )
    pause_reason: str | None = None


class QuotaStatus(BaseModel):
    limit: int | None = Field(description="Sends per rolling 24 hours the provider allows; None = no limit")
    used: int = Field(description="Sends counted over the last 24 hours, all replicas")


class InDoubtStatus(BaseModel):
    count: int
    oldest_since: datetime | None = None


class DeliveryStatus(BaseModel):
    service: str
    replica: str
    channel: str
    routes: list[RouteStatus]
    quota: QuotaStatus
    states: dict[str, int] = Field(description="Deliveries by state (all time)")
    due: int = Field(description="Queued deliveries due now")
    in_flight: int = Field(description="Sends committed 'sending' within the in-doubt age")
    in_doubt: InDoubtStatus = Field(
        description="'sending' older than the in-doubt age: awaiting reconciliation"
    )
    in_doubt_after_s: float
    as_of: datetime


async def _scalar(conn: AsyncConnection, sql: str, params: dict[str, Any]) -> Any:
    """A read that answers None when a table is not there (a dispatcher migrated before that revision)."""
    try:
        async with conn.begin_nested():
            return (await conn.execute(text(sql), params)).scalar_one_or_none()
    except Exception:  # noqa: BLE001 - UndefinedTable: report nothing rather than fail the page
        return None


async def delivery_status(
    conn: AsyncConnection, schema: str, service: str, engine: DeliveryEngine
) -> DeliveryStatus:
    s = schema
    now: datetime = (await conn.execute(text("SELECT now()"))).scalar_one()
    in_doubt_after = engine.settings.dispatch_in_doubt_after_s
    states = {
        str(r.state): int(r.n)
        for r in await conn.execute(text(f"SELECT state, count(*) AS n FROM {s}.deliveries GROUP BY state"))
    }
    row = (
        await conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE state = 'queued' AND next_attempt_at <= now()) AS due,"
                " count(*) FILTER (WHERE state = 'sending' AND updated_at >= now() - make_interval(secs => :a))"
                " AS in_flight,"
                " count(*) FILTER (WHERE state = 'sending' AND updated_at < now() - make_interval(secs => :a))"
                " AS in_doubt,"
                " min(updated_at) FILTER (WHERE state = 'sending' AND updated_at < now() - make_interval(secs => :a))"
                f" AS oldest FROM {s}.deliveries WHERE state IN ('queued', 'sending')"
            ),
            {"a": in_doubt_after},
        )
    ).one()
    limit = engine.daily_quota
    used = await _scalar(
        conn,
        f"SELECT coalesce(sum(used), 0) FROM {s}.quota_window WHERE name = :n"
        " AND bucket > now() - interval '24 hours'",
        {"n": engine.channel.limiter_name},
    )
    pause = None
    try:
        async with conn.begin_nested():
            pause = (
                await conn.execute(
                    text(f"SELECT until, reason FROM {s}.route_pauses WHERE name = :n AND until > now()"),
                    {"n": engine.channel.limiter_name},
                )
            ).one_or_none()
    except Exception:  # noqa: BLE001 - no route_pauses table yet
        pause = None

    routes: list[RouteStatus] = []
    candidates: list[tuple[Literal["primary", "fallback"], Any]] = [(PRIMARY, engine.channel)]  # type: ignore[list-item]
    if engine.fallback is not None:
        candidates.append((FALLBACK, engine.fallback))  # type: ignore[arg-type]
    for name, route in candidates:
        breaker = engine.breakers[name]
        ahead = await _scalar(
            conn,
            f"SELECT greatest(0, extract(epoch FROM (tat - clock_timestamp())))::float8 FROM {s}.rate_limiter"
            " WHERE name = :n",
            {"n": route.limiter_name},
        )
        routes.append(
            RouteStatus(
                route=name,
                provider=route.provider,
                breaker=BreakerStatus(
                    state=breaker.state,
                    failure_threshold=breaker.failure_threshold,
                    cooldown_s=breaker.cooldown_s,
                ),
                rate_per_s=route.rate_per_s,
                limiter_ahead_s=None if ahead is None else round(float(ahead), 3),
                paused_until=pause.until if (pause is not None and name == PRIMARY) else None,
                pause_reason=pause.reason if (pause is not None and name == PRIMARY) else None,
            )
        )
    return DeliveryStatus(
        service=service,
        replica=socket.gethostname(),
        channel=engine.channel.channel,
        routes=routes,
        quota=QuotaStatus(limit=limit, used=int(used or 0)),
        states=states,
        due=int(row.due or 0),
        in_flight=int(row.in_flight or 0),
        in_doubt=InDoubtStatus(count=int(row.in_doubt or 0), oldest_since=row.oldest),
        in_doubt_after_s=in_doubt_after,
        as_of=now,
    )


def status_router(engine: DeliveryEngine) -> RouterFactory:
    """The dispatcher's read-only status route, bound to its delivery engine (for the breakers)."""

    def factory(get_context: Callable[[], Context]) -> APIRouter:
        r = APIRouter(prefix="/delivery", tags=["delivery"])

        @r.get("/status", response_model=DeliveryStatus, dependencies=[Depends(requires("providers.read"))])
        async def status() -> DeliveryStatus:
            """Provider health of this dispatcher: breakers, limiter, quota, sends in flight and in doubt."""
            ctx = get_context()
            async with ctx.engine.connect() as conn:
                return await delivery_status(conn, ctx.schema, ctx.service, engine)

        return r

    return factory
