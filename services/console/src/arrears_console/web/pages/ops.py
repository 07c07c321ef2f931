"""Operations pages.

- **Dead letters** (`/ops/dlq`, `dlq.read`): browse with filters (topic, consumer group, reason text,
  account), inspect one record (headers and payload; personal data masked without `accounts.read`), replay
  one record or the filtered set (`dlq.replay`, admin). A filtered replay is confirmed on a page that lists
  exactly what will be sent and is capped (`ARREARS_CONSOLE_DLQ_REPLAY_MAX`). A replay keeps the record's
  `ce_id` and is addressed to the group that dead-lettered it, so that group applies it once however often
  it is replayed. Every replay is in the console's audit log (who, what, how many).
- **Ingest** (`/ops/ingest`, `ingest.read`): recent runs and current rejects from ingest's API, each reject
  with the fix to make in the sheet; "Run the sheet now" (`ingest.run`); the rejects as CSV.
- **Providers** (`/ops/providers`, `providers.read`): each dispatcher's `GET /delivery/status`.
- **Incident** (`/ops/incident`, `providers.read`): the sending halts in force and the latest ones; halt
  all sending, one channel or one campaign and resume (`sending.halt`: supervisors, admins; a reason each
  time); for admins, locked sign-ins with their unlock (`security.manage`), the security events the platform
  raised (lockouts, unusual access), and "revoke every API key" (`keys.manage`, typed confirmation). Each
  change is in the console's audit log, in the transaction that makes it (docs/runbooks.md).

Ingest and the dispatchers are called as the signed-in person (they authorise and audit the call).
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlencode

from arrears_shared import channels
from arrears_shared import dlq as dead_letters
from arrears_shared.audit import record
from arrears_shared.auth import Principal, lockout, requires
from arrears_shared.auth.security_views import unlock as unlock_key
from arrears_shared.auth.views import REVOKE_ALL_CONFIRMATION, revoke_all_keys
from arrears_shared.control import halts
from arrears_shared.control.views import resume as resume_halt
from arrears_shared.control.views import set_halt
from arrears_shared.stream import dead_letter as dl
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from ...dlq import browse
from ...settings import ConsoleSettings
from ..templating import page
from ..upstream import UpstreamError, Upstreams, registered_dispatchers
from .common import ContextGetter, back, upstreams


def _filter(topic: str, group: str, reason: str, account: str) -> browse.DlqFilter:
    return browse.DlqFilter(topic.strip(), group.strip(), reason.strip(), account.strip())


def _dlq_path(f: browse.DlqFilter) -> str:
    return "/ops/dlq" + (("?" + urlencode(f.params())) if f.params() else "")


def router(get_context: ContextGetter) -> APIRouter:
    r = APIRouter(tags=["web"], include_in_schema=False)

    # -- dead letters ------------------------------------------------------------------------------------

    @r.get("/ops/dlq", response_class=HTMLResponse)
    async def dlq_list(
        request: Request,
        topic: str = Query("", max_length=300),
        group: str = Query("", max_length=200),
        reason: str = Query("", max_length=200),
        account: str = Query("", max_length=64),
        who: Principal = Depends(requires("dlq.read")),
    ) -> HTMLResponse:
        ctx = get_context()
        f = _filter(topic, group, reason, account)
        async with ctx.engine.connect() as conn:
            items, total = await browse.browse(conn, ctx.schema, f)
            topics, groups = await browse.facets(conn, ctx.schema)
        return page(
            request,
            who,
            "dlq.html",
            items=items,
            total=total,
            f=f,
            topics=topics,
            groups=groups,
            cap=cast(ConsoleSettings, ctx.settings).console_dlq_replay_max,
        )

    @r.get("/ops/dlq/record", response_class=HTMLResponse)
    async def dlq_record(
        request: Request,
        topic: str = Query(..., max_length=300),
        partition: int = Query(..., ge=0),
        offset: int = Query(..., ge=0),
        who: Principal = Depends(requires("dlq.read")),
    ) -> HTMLResponse:
        ctx = get_context()
        found = (
            await browse.fetch(ctx.settings.kafka_client_kwargs(), topic, partition, offset)
            if browse.is_dlq_topic(topic)
            else None
        )
        if found is None:
            return page(
                request,
                who,
                "dlq_record.html",
                status=404,
                d=None,
                topic=topic,
                partition=partition,
                offset=offset,
            )
        value = found.value
        if who.sees_pii:  # personal fields travel sealed: opened only for people who may read them
            async with ctx.engine.connect() as conn:
                value = await browse.opened_value(conn, found)
        payload, is_json = browse.payload_text(value, who.sees_pii)
        return page(
            request,
            who,
            "dlq_record.html",
            d=found,
            summary=found.summary()
            if who.sees_pii
            else {**found.summary(), "reason": browse.mask_pii(found.reason)},
            headers=browse.headers_for_display(found, who.sees_pii),
            payload=payload,
            is_json=is_json,
            masked=not who.sees_pii,
            topic=topic,
            partition=partition,
            offset=offset,
        )

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
        found = await browse.fetch(kafka, topic, partition, offset) if browse.is_dlq_topic(topic) else None
        if found is None or not found.original_topic:
            return back("/ops/dlq", error=f"no dead letter at {topic} {partition}:{offset}")
        sent = await dead_letters.replay(kafka, [found])
        async with ctx.transaction() as tx:
            await record(
                tx.conn,
                ctx.schema,
                who,
                "dlq.replay",
                "dead_letter",
                browse.ref(found),
                after={
                    "original_topic": found.original_topic,
                    "consumer_group": found.h.get(dl.ORIGINAL_GROUP),
                    "ce_id": found.h.get("ce_id"),
                    "count": sent,
                },
            )
        return back("/ops/dlq", flash=f"replayed {topic} {partition}:{offset} to {found.original_topic}")

    @r.post("/ops/dlq/replay-set", response_class=HTMLResponse)
    async def replay_set(
        request: Request,
        topic: str = Form("", max_length=300),
        group: str = Form("", max_length=200),
        reason: str = Form("", max_length=200),
        account: str = Form("", max_length=64),
        confirm: str = Form("", max_length=16),
        expected: str = Form("", max_length=64),
        who: Principal = Depends(requires("dlq.replay")),
    ) -> Response:
        """Without `confirm`: the confirmation page (what exactly will be sent). With `confirm=yes` and the
        digest of the confirmed set: the replay, refused if the set changed in between."""
        ctx = get_context()
        cap = cast(ConsoleSettings, ctx.settings).console_dlq_replay_max
        f = _filter(topic, group, reason, account)
        if f.empty:
            return back(
                "/ops/dlq", error="choose a filter first: a replay of every dead letter is never right"
            )
        if f.topic and not browse.is_dlq_topic(f.topic):
            return back(_dlq_path(f), error=f"{f.topic} is not a dead-letter topic")
        kafka = ctx.settings.kafka_client_kwargs()
        found = await browse.replay_set(kafka, f, cap)
        if not found:
            return back(_dlq_path(f), error="no dead letter matches this filter")
        if len(found) > cap:
            return back(
                _dlq_path(f),
                error=f"more than {cap} dead letters match ({f.describe()}); narrow the filter"
                " (one replay sends at most ARREARS_CONSOLE_DLQ_REPLAY_MAX)",
            )
        digest = browse.digest(found)
        if confirm != "yes" or expected != digest:
            changed = confirm == "yes"
            rows = [
                d.summary() if who.sees_pii else {**d.summary(), "reason": browse.mask_pii(d.reason)}
                for d in found
            ]
            return page(request, who, "dlq_confirm.html", f=f, rows=rows, digest=digest, changed=changed)
        sent = await dead_letters.replay(kafka, found)
        async with ctx.transaction() as tx:
            await record(
                tx.conn,
                ctx.schema,
                who,
                "dlq.replay_set",
                "dead_letters",
                f.describe()[:300],
                after={"filter": f.params(), "count": sent, "records": [browse.ref(d) for d in found]},
            )
        return back(
            _dlq_path(f), flash=f"replayed {sent} dead letter{'' if sent == 1 else 's'} ({f.describe()})"
        )

    # -- ingest ------------------------------------------------------------------------------------------

    @r.get("/ops/ingest", response_class=HTMLResponse)
    async def ingest_page(
        request: Request, who: Principal = Depends(requires("ingest.read"))
    ) -> HTMLResponse:
        ups = upstreams(get_context())
        runs: list[dict[str, Any]] = []
        rejects: dict[str, Any] = {"items": [], "total": 0}
        unavailable = ""
        try:
            runs = (await ups.call(request, who, "ingest", "GET", "/ingest/runs", params={"limit": 20}))[
                "items"
            ]
            rejects = await ups.call(request, who, "ingest", "GET", "/ingest/rejects", params={"limit": 300})
        except UpstreamError as e:
            unavailable = e.detail
        return page(
            request,
            who,
            "ingest.html",
            status=502 if unavailable else 200,
            runs=runs,
            rejects=rejects,
            unavailable=unavailable,
        )

    @r.post("/ops/ingest/run")
    async def ingest_run(request: Request, who: Principal = Depends(requires("ingest.run"))) -> Response:
        try:
            run = await upstreams(get_context()).call(request, who, "ingest", "POST", "/ingest/sheet")
        except UpstreamError as e:
            return back("/ops/ingest", error=f"the sheet run did not start: {e.detail}")
        if run.get("status") == "failed":
            return back("/ops/ingest", error=f"the sheet run failed: {run.get('error') or 'unknown error'}")
        return back(
            "/ops/ingest",
            flash=f"sheet read: {run['rows']} rows, {run['accepted']} accepted, {run['rejected']} rejected",
        )

    @r.get("/ops/ingest/rejects.csv")
    async def ingest_rejects_csv(
        request: Request, who: Principal = Depends(requires("ingest.read"))
    ) -> Response:
        """Ingest's `GET /ingest/rejects.csv`, fetched as the signed-in person (the browser's session is the
        console's; ingest is not reachable from the browser)."""
        ups = upstreams(get_context())
        try:
            upstream = await ups.http.get(
                ups.urls["ingest"] + "/ingest/rejects.csv", headers=Upstreams.credentials(request, who)
            )
        except Exception as e:  # noqa: BLE001 - httpx errors: show the page's error line instead
            return back("/ops/ingest", error=f"ingest is unreachable ({type(e).__name__})")
        if upstream.status_code != 200:
            return back("/ops/ingest", error=f"ingest answered {upstream.status_code} for the rejects CSV")
        return Response(
            upstream.content,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="ingest-rejects.csv"'},
        )

    # -- incident controls -------------------------------------------------------------------------------

    @r.get("/ops/incident", response_class=HTMLResponse)
    async def incident_page(
        request: Request, who: Principal = Depends(requires("providers.read"))
    ) -> HTMLResponse:
        ctx = get_context()
        async with ctx.engine.connect() as conn:
            active = await halts.active(conn)
            recent = [h for h in await halts.recent(conn, 15) if h.cleared_at is not None]
            locks = await lockout.locked_keys(conn) if who.can("security.manage") else []
            events = await lockout.recent_events(conn, limit=30) if who.can("security.manage") else []
        return page(
            request,
            who,
            "incident.html",
            active=active,
            recent=recent,
            locks=locks,
            events=events,
            channels=[(c.name, c.label) for c in channels.registered().values()],
        )

    @r.post("/ops/incident/halt")
    async def incident_halt(
        scope: str = Form(..., max_length=16),
        target: str = Form("", max_length=64),
        reason: str = Form("", max_length=500),
        who: Principal = Depends(requires("sending.halt")),
    ) -> Response:
        try:
            halt = await set_halt(get_context(), who, scope, target or None, reason)
        except halts.HaltError as e:
            return back("/ops/incident", error=str(e))
        return back("/ops/incident", flash=f"halted {halt.label}: nothing matching is sent until resumed")

    @r.post("/ops/incident/resume")
    async def incident_resume(
        halt_id: str = Form(..., max_length=64),
        reason: str = Form("", max_length=500),
        who: Principal = Depends(requires("sending.halt")),
    ) -> Response:
        try:
            done = await resume_halt(get_context(), who, halt_id, reason)
        except halts.HaltError as e:
            return back("/ops/incident", error=str(e))
        if done is None:
            return back("/ops/incident", error="that halt is no longer active")
        return back(
            "/ops/incident", flash=f"resumed {done.label}: held notices go again, through every check"
        )

    @r.post("/ops/incident/unlock")
    async def incident_unlock(
        key_id: str = Form(..., max_length=64),
        reason: str = Form("", max_length=500),
        who: Principal = Depends(requires("security.manage")),
    ) -> Response:
        if len(reason.strip()) < 3:
            return back("/ops/incident", error="say why the key may sign in again (3-500 characters)")
        done = await unlock_key(get_context(), who, key_id, reason.strip())
        if done is None:
            return back("/ops/incident", error=f"key {key_id} is not locked")
        return back("/ops/incident", flash=f"unlocked {done.name or key_id} ({key_id})")

    @r.post("/ops/incident/revoke-all")
    async def incident_revoke_all(
        reason: str = Form("", max_length=500),
        confirm: str = Form("", max_length=32),
        keep_own: str = Form("", max_length=8),
        who: Principal = Depends(requires("keys.manage")),
    ) -> Response:
        if confirm.strip() != REVOKE_ALL_CONFIRMATION:
            return back(
                "/ops/incident", error="type REVOKE ALL to confirm: every API key stops working at once"
            )
        if len(reason.strip()) < 3:
            return back("/ops/incident", error="say why (3-500 characters): it is in the audit log")
        done = await revoke_all_keys(get_context(), who, reason.strip(), keep_own=bool(keep_own))
        kept = " (yours kept)" if done.kept else ""
        return back(
            "/ops/incident",
            flash=f"revoked {done.revoked} API keys{kept}; {done.sessions_ended} console sessions ended",
        )

    # -- providers ---------------------------------------------------------------------------------------

    @r.get("/ops/providers", response_class=HTMLResponse)
    async def providers_page(
        request: Request, who: Principal = Depends(requires("providers.read"))
    ) -> HTMLResponse:
        ups = upstreams(get_context())
        dispatchers: list[dict[str, Any]] = []
        for name in registered_dispatchers():
            try:
                status = await ups.call(request, who, name, "GET", "/delivery/status")
                dispatchers.append({"name": name, "status": status, "error": ""})
            except UpstreamError as e:
                dispatchers.append({"name": name, "status": None, "error": e.detail})
        return page(request, who, "providers.html", dispatchers=dispatchers)

    return r
