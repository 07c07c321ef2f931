"""`POST /replies/{reply_id}/intent` (accounts.work): correct a reply's intent; `GET /intent-corrections`
(audit.read): the labelled examples. Corrections are audited with the person as the actor."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from arrears_shared import paging
from arrears_shared.audit import record
from arrears_shared.auth import Principal, requires
from arrears_shared.service import Context
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response

from .service import Corrected, Correction, correct, labelled_examples, publish_decision


def corrections_router(get_context: Callable[[], Context]) -> APIRouter:
    router = APIRouter(tags=["replies"])

    @router.post("/replies/{reply_id}/intent", response_model=Corrected)
    async def correct_intent(
        body: Correction,
        reply_id: str = Path(min_length=1, max_length=200),
        who: Principal = Depends(requires("accounts.work")),
    ) -> Corrected:
        ctx = get_context()
        now = datetime.now(UTC)
        async with ctx.transaction() as tx:
            done = await correct(tx.conn, ctx.schema, reply_id, body.intent, who.name, now)
            if done is None:
                raise HTTPException(404, "no such reply")
            corrected, before, reply = done
            if reply.account_id is not None and not reply.erased:  # erased: nothing published, nothing sent
                await publish_decision(tx, ctx.settings, reply, body.intent, who.name, now)  # type: ignore[arg-type]
            await record(
                tx.conn, ctx.schema, who, "reply.intent_corrected", "reply", reply_id,
                before=before, after={"intent": corrected.intent, "account_id": corrected.account_id},
            )  # fmt: skip
        return corrected

    @router.get(
        "/intent-corrections", dependencies=[Depends(requires("audit.read"))], responses=paging.RESPONSES
    )
    async def corrections(
        request: Request,
        response: Response,
        limit: int = Query(500, ge=1, le=10_000),
        cursor: str | None = paging.CURSOR_QUERY,
    ) -> list[dict[str, Any]]:
        ctx = get_context()
        async with ctx.engine.connect() as conn:
            found, after = await labelled_examples(conn, ctx.schema, limit, cursor)
        paging.announce(request, response, after)
        return found

    return router
