"""Approvals queue (supervisor): steps held by the approval gate, with approve / reject — calls to the
segmenter's approvals API as the signed-in person (who is recorded as the approver)."""

from __future__ import annotations

from typing import Literal

from arrears_shared.auth import Principal, requires
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, Response

from ..templating import page
from ..upstream import UpstreamError
from .common import ContextGetter, back, upstreams


def router(get_context: ContextGetter) -> APIRouter:
    r = APIRouter(tags=["web"], include_in_schema=False)
    decider = Depends(requires("approvals.decide"))

    @r.get("/approvals", response_class=HTMLResponse)
    async def queue(request: Request, who: Principal = decider) -> HTMLResponse:
        try:
            held, more = await upstreams(get_context()).walk(request, who, "segmenter", "/approvals")
        except UpstreamError as e:
            return page(request, who, "approvals.html", status=502, held=[], more=False, unavailable=e.detail)
        return page(request, who, "approvals.html", held=held, more=more, unavailable="")

    @r.post("/approvals/{account_id}/{verdict}")
    async def decide(
        request: Request,
        account_id: str,
        verdict: Literal["approve", "reject"],
        step: int = Form(..., ge=1),
        cycle: int = Form(..., ge=0),
        note: str = Form("", max_length=2000),
        who: Principal = decider,
    ) -> Response:
        body = {"step": step, "cycle": cycle, "note": note}
        try:
            await upstreams(get_context()).call(
                request, who, "segmenter", "POST", f"/approvals/{account_id}/{verdict}", json=body
            )
        except UpstreamError as e:
            return back("/approvals", error=f"{verdict} {account_id} failed: {e.detail}")
        done = (
            "approved: the step goes through the compliance gate now" if verdict == "approve" else "rejected"
        )
        return back("/approvals", flash=f"{account_id} step {step} {done}")

    return r
