"""Dunning policy (supervisor): the active version as YAML, who loaded which version when, and a new version in
two steps — Simulate (the candidate against the active policy over the next days, on current data, nothing
written) and only then Activate, which posts the very document that was simulated. Both are calls to the
segmenter's policies API as the signed-in person, who is recorded as the loader (and in its audit log)."""

from __future__ import annotations

import hashlib
from typing import Any

import yaml
from arrears_shared.audit.coverage import changes_nothing
from arrears_shared.auth import Principal, requires
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from ..templating import page
from ..upstream import UpstreamError
from .common import ContextGetter, back, upstreams

YAML = "application/yaml"
MAX_DOC = 200_000  # characters of a policy document
SIMULATE_TIMEOUT_S = 90.0  # the segmenter caps each of its two runs at 30 s of wall time
OUTCOMES = ("sent", "deferred", "suppressed", "held")


def _normalise(text: str) -> str:
    """Browsers send form text with CRLF line ends: the simulated and the activated text must be the same."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def side_by_side(candidate: dict[str, Any], active: dict[str, Any]) -> dict[str, Any]:
    """The two simulation summaries merged into rows the template shows next to each other."""

    def merge(key: str, ident: tuple[str, ...], fields: tuple[str, ...]) -> list[dict[str, Any]]:
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        for side, summary in (("candidate", candidate), ("active", active)):
            for r in summary[key]:
                k = tuple(r[i] for i in ident)
                row = rows.setdefault(k, {**{i: r[i] for i in ident}, "candidate": {}, "active": {}})
                row[side] = {f: r[f] for f in fields}
        for row in rows.values():
            for side in ("candidate", "active"):
                row[side] = {f: row[side].get(f, 0) for f in fields}
        return list(rows.values())

    return {
        "by_tier_channel": merge("by_tier_channel", ("tier", "channel"), OUTCOMES),
        "by_day": sorted(merge("by_day", ("day",), ("sent",)), key=lambda r: r["day"]),
        "gate_by_rule": sorted(
            merge("gate_by_rule", ("outcome", "rule_id"), ("count",)),
            key=lambda r: (r["outcome"], r["rule_id"]),
        ),
    }


def router(get_context: ContextGetter) -> APIRouter:
    r = APIRouter(tags=["web"], include_in_schema=False)
    reader = Depends(requires("reports.read"))
    writer = Depends(requires("policies.write"))

    async def render(request: Request, who: Principal, *, status: int = 200, **extra: Any) -> HTMLResponse:
        """The page: the active version and the history, plus what a form step adds (`extra`)."""
        up = upstreams(get_context())
        ctx: dict[str, Any] = {
            "active": None,
            "active_yaml": "",
            "versions": [],
            "unavailable": "",
            "document": None,
            "errors": [],
            "comparison": None,
            "outcomes": OUTCOMES,
        }
        try:
            active = await up.call(request, who, "segmenter", "GET", "/policies/active")
            versions = await up.call(request, who, "segmenter", "GET", "/policies", params={"limit": 50})
        except UpstreamError as e:
            ctx["unavailable"] = e.detail
            status = 502 if status == 200 else status
        else:
            ctx["active"], ctx["versions"] = active, versions
            ctx["active_yaml"] = yaml.safe_dump(active, sort_keys=False, allow_unicode=True)
        ctx.update(extra)
        if ctx["document"] is None:  # the form starts from the active version
            ctx["document"] = ctx["active_yaml"]
        return page(request, who, "policies.html", status=status, **ctx)

    @r.get("/policies", response_class=HTMLResponse)
    async def view(request: Request, who: Principal = reader) -> HTMLResponse:
        return await render(request, who)

    @r.post(
        "/policies/simulate",
        response_class=HTMLResponse,
        dependencies=[Depends(changes_nothing("a dry run at the segmenter"))],
    )
    async def simulate(
        request: Request,
        document: str = Form("", max_length=MAX_DOC),
        upload: UploadFile | None = File(None),
        days: int = Form(30, ge=1, le=90),
        who: Principal = writer,
    ) -> HTMLResponse:
        if upload is not None and upload.filename:
            raw = await upload.read(MAX_DOC + 1)
            if len(raw) > MAX_DOC:
                return await render(request, who, status=413, errors=[{"loc": "file", "msg": "too large"}])
            try:
                document = raw.decode("utf-8")
            except UnicodeDecodeError:
                return await render(
                    request, who, status=422, errors=[{"loc": "file", "msg": "not UTF-8 text"}]
                )
        document = _normalise(document)
        if not document.strip():
            return await render(
                request,
                who,
                status=422,
                document="",
                errors=[{"loc": "document", "msg": "paste or upload a policy"}],
            )
        try:
            result = await upstreams(get_context()).call(
                request,
                who,
                "segmenter",
                "POST",
                "/policies/simulate",
                params={"days": days},
                content=document,
                content_type=YAML,
                timeout_s=SIMULATE_TIMEOUT_S,
            )
        except UpstreamError as e:
            return await render(request, who, status=e.status, document=document, errors=_errors(e))
        return await render(
            request,
            who,
            document=document,
            digest=digest(document),
            comparison=result,
            rows=side_by_side(result["candidate"], result["active"]),
        )

    @r.post("/policies/activate")
    async def activate(
        request: Request,
        document: str = Form(..., max_length=MAX_DOC),
        simulated: str = Form(..., max_length=64),
        who: Principal = writer,
    ) -> Response:
        document = _normalise(document)
        if digest(document) != simulated:  # only the exact text that was simulated is activated
            return await render(
                request,
                who,
                status=409,
                document=document,
                errors=[
                    {"loc": "document", "msg": "this is not the text that was simulated: simulate it again"}
                ],
            )
        try:
            loaded = await upstreams(get_context()).call(
                request, who, "segmenter", "POST", "/policies", content=document, content_type=YAML
            )
        except UpstreamError as e:
            return await render(request, who, status=e.status, document=document, errors=_errors(e))
        return back(
            "/policies",
            flash=f"{loaded['policy_id']} version {loaded['version']} is active; "
            f"{loaded['replanned_accounts']} accounts re-planned (future steps only)",
        )

    return r


def _errors(e: UpstreamError) -> list[dict[str, Any]]:
    """The segmenter's 422 names every problem and where it is; anything else is one line."""
    if isinstance(e.payload, dict) and isinstance(e.payload.get("errors"), list):
        return [{"loc": str(x.get("loc", "")), "msg": str(x.get("msg", ""))} for x in e.payload["errors"]]
    if isinstance(e.payload, list):  # FastAPI's own validation errors (e.g. days out of range)
        return [
            {"loc": ".".join(str(p) for p in x.get("loc", [])), "msg": str(x.get("msg", ""))}
            for x in e.payload
            if isinstance(x, dict)
        ]
    return [{"loc": e.service, "msg": e.detail}]
