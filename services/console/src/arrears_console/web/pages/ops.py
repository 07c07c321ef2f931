"""Operations: dead letters — browse (supervisor+) with their headers, replay one (admin). A replay keeps
the record's `ce_id`, so the consuming service applies it at most once however often it is replayed; each
replay is in the console's audit log."""

from __future__ import annotations

from arrears_shared import dlq as dead_letters
from arrears_shared.audit import record
from arrears_shared.auth import Principal, requires
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from ...readmodels import service
from ..templating import page
from .common import ContextGetter, back


def router(get_context: ContextGetter) -> APIRouter:
    r = APIRouter(tags=["web"], include_in_schema=False)

    @r.get("/ops/dlq", response_class=HTMLResponse)
    async def dlq_list(
        request: Request, topic: str | None = None, who: Principal = Depends(requires("dlq.read"))
    ) -> HTMLResponse:
        ctx = get_context()
        async with ctx.engine.connect() as conn:
            items = await service.dlq(conn, ctx.schema, 200, topic)
        return page(request, who, "dlq.html", items=items, topic=topic or "")

    @r.post("/ops/dlq/replay")
    async def replay(
        request: Request,
        topic: str = Form(..., max_length=300),
        partition: int = Form(..., ge=0),
        offset: int = Form(..., ge=0),
        who: Principal = Depends(requires("dlq.replay")),
    ) -> Response:
        ctx = get_context()
        kafka = ctx.settings.kafka_client_kwargs()
        found = [
            d
            for d in await dead_letters.scan(kafka, dead_letters.Filter(topics=(topic,)))
            if d.partition == partition and d.offset == offset
        ]
        if not found:
            return back("/ops/dlq", error=f"no dead letter at {topic} {partition}:{offset}")
        sent = await dead_letters.replay(kafka, found)
        async with ctx.transaction() as tx:
            await record(
                tx.conn,
                ctx.schema,
                who,
                "dlq.replay",
                "dead_letter",
                f"{topic}/{partition}/{offset}",
                after={
                    "original_topic": found[0].original_topic,
                    "ce_id": found[0].h.get("ce_id"),
                    "sent": sent,
                },
            )
        return back("/ops/dlq", flash=f"replayed {topic} {partition}:{offset} to {found[0].original_topic}")

    return r
