"""Accounts: search (the console's read model; names masked for viewers) and the account page — who, money,
aging, consents and holds from the segmenter, one timeline merged from escalation's activity (sheet changes,
messages, replies, cases, tasks, overrides, notes, audit) and the segmenter's scheduling decisions (every
suppression with its rule), and the actions a person may take, each a call to escalation's override API."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from arrears_shared.account_status import AccountStatus
from arrears_shared.auth import Principal, requires
from arrears_shared.events import AgingBucket, Intent, RiskBand
from arrears_shared.money import to_minor
from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, Response

from ...readmodels import service
from ...readmodels.scores import score_of
from ...readmodels.views import today_utc
from ..templating import page
from ..upstream import UpstreamError
from .common import ContextGetter, back, upstreams

# action -> (escalation path suffix, permission, what the confirmation says; "" = no confirmation)
ACTIONS: dict[str, tuple[str, str, str]] = {
    "pause": ("pause", "accounts.work", ""),
    "resume": ("resume", "accounts.work", "Resume reminders to this customer?"),
    "snooze": ("snooze", "accounts.work", ""),
    "dispute": ("dispute", "accounts.work", ""),
    "skip": ("steps/{step}/skip", "overrides.write", ""),
    "approve": ("steps/{step}/approve", "approvals.decide", "Approve: this step will message the customer."),
    "send-now": ("send-now", "overrides.write", "Send now: this messages the customer."),
    "channel-preference": ("channel-preference", "overrides.write", ""),
    "do-not-contact": ("do-not-contact", "overrides.write", ""),
}


INTENTS = [i.value for i in Intent]
BUCKETS = [b.value for b in AgingBucket]
STATUSES = [s.value for s in AccountStatus]
RISK_BANDS = [b.value for b in RiskBand]


def _merge_timeline(
    activity: list[dict[str, Any]], decisions: list[dict[str, Any]], sees_pii: bool = False
) -> list[dict[str, Any]]:
    items = [
        {
            "at": a["at"],
            "kind": a["kind"].split(".", 1)[0],
            "label": a["kind"],
            "summary": a["summary"],
            "reply_id": (a.get("data") or {}).get("reply_id") if a["kind"] == "message_in" else None,
            "intent": (a.get("data") or {}).get("intent"),
            # the text the customer was sent: personal data, shown only to who may read it
            "sent_text": (a.get("data") or {}).get("text")
            if sees_pii and a["kind"] == "message_out.sent"
            else None,
        }
        for a in activity
    ]
    for d in decisions:
        where = f"step {d['step']} {d['channel'] or ''}".strip() if d.get("step") is not None else ""
        items.append(
            {
                "at": d["at"],
                "kind": "decision",
                "label": f"decision.{d['outcome']}",
                "summary": f"{where}: {d['outcome']} by rule {d['rule_id']}"
                + (f" — {d['reason']}" if d["reason"] else ""),
            }
        )
    return sorted(items, key=lambda i: i["at"], reverse=True)


def router(get_context: ContextGetter) -> APIRouter:
    r = APIRouter(tags=["web"], include_in_schema=False)

    @r.get("/accounts", response_class=HTMLResponse)
    async def search(
        request: Request,
        q: str | None = Query(None, max_length=100),
        bucket: str = Query("", max_length=20, description="An aging bucket; empty: any"),
        status: str = Query("", max_length=20),
        campaign: str = Query("", max_length=64),
        assignee: str = Query("", max_length=100, description="Accounts with an open task of this person"),
        at_risk: bool = Query(False, description="Only accounts with a failed payment outstanding"),
        band: str = Query("", max_length=10, description="Band of the latest model score; empty: any"),
        limit: int = Query(50, ge=1, le=500),
        who: Principal = Depends(requires("reports.read")),
    ) -> HTMLResponse:
        ctx = get_context()
        only: list[str] | None = None
        if at_risk and who.can("accounts.read"):
            try:
                open_retries = await upstreams(ctx).call(
                    request, who, "segmenter", "GET", "/payment-retries", params={"state": "open"}
                )
            except UpstreamError as e:
                return page(
                    request, who, "error.html", status=502, message=f"payments unavailable: {e.detail}"
                )
            only = sorted({r["account_id"] for r in open_retries})
        if assignee and who.can("accounts.read"):
            try:
                tasks, _ = await upstreams(ctx).walk(
                    request, who, "escalation", "/tasks", params={"assignee": assignee, "status": "open"},
                    at_most=10_000,
                )  # fmt: skip
            except UpstreamError as e:
                return page(request, who, "error.html", status=502, message=f"tasks unavailable: {e.detail}")
            mine = {t["account_id"] for t in tasks}
            only = sorted(mine if only is None else mine & set(only))
        async with ctx.engine.connect() as conn:
            found = await service.accounts(
                conn,
                ctx.schema,
                today_utc(),
                bucket=bucket if bucket in BUCKETS else None,
                q=q,
                limit=limit,
                names=who.sees_pii,
                status=status or None,
                campaign=campaign or None,
                only=only,
                band=band if band in RISK_BANDS else None,
            )
        if not who.sees_pii:
            service.mask_personal(found)
        return page(
            request,
            who,
            "accounts.html",
            found=found,
            q=q or "",
            bucket=bucket if bucket in BUCKETS else "",
            buckets=BUCKETS,
            status_filter=status,
            statuses=STATUSES,
            campaign=campaign,
            assignee=assignee,
            at_risk=at_risk,
            band=band if band in RISK_BANDS else "",
            bands=RISK_BANDS,
        )

    @r.get("/accounts/{account_id}", response_class=HTMLResponse)
    async def account(
        request: Request, account_id: str, who: Principal = Depends(requires("accounts.read"))
    ) -> HTMLResponse:
        ctx = get_context()
        up = upstreams(ctx)
        async with ctx.engine.connect() as conn:
            campaign = await service.campaign_of(conn, ctx.schema, account_id)
            score = await score_of(conn, ctx.schema, account_id)
        problems: list[str] = []
        acct: dict[str, Any] | None = None
        activity: list[dict[str, Any]] = []
        decisions: list[dict[str, Any]] = []
        held: list[dict[str, Any]] = []
        promises: list[dict[str, Any]] = []
        offers: list[dict[str, Any]] = []
        retries: list[dict[str, Any]] = []
        try:
            acct = await up.call(request, who, "segmenter", "GET", f"/accounts/{account_id}")
            retries = await up.call(
                request, who, "segmenter", "GET", f"/accounts/{account_id}/payment-retries"
            )
            decisions, _ = await up.walk(
                request, who, "segmenter", f"/accounts/{account_id}/decisions", at_most=5000
            )
        except UpstreamError as e:
            if e.status != 404:
                problems.append(f"segmenter: {e.detail}")
        try:
            activity, _ = await up.walk(
                request, who, "escalation", f"/accounts/{account_id}/timeline", at_most=10_000
            )
            promises, _ = await up.walk(request, who, "escalation", f"/accounts/{account_id}/promises")
            offers, _ = await up.walk(request, who, "escalation", f"/accounts/{account_id}/offers")
        except UpstreamError as e:
            problems.append(f"escalation: {e.detail}")
        if who.can("approvals.decide"):
            try:
                held = [
                    h
                    for h in await up.call(request, who, "segmenter", "GET", "/approvals")
                    if h["account_id"] == account_id
                ]
            except UpstreamError as e:
                problems.append(f"approvals: {e.detail}")
        if acct is None and not activity:
            return page(
                request,
                who,
                "account.html",
                status=404,
                acct=None,
                account_id=account_id,
                timeline=[],
                held=[],
                problems=problems,
                actions={},
                promises=[],
                offers=[],
                upcoming=[],
                intents=INTENTS,
            )
        allowed = {name: spec for name, spec in ACTIONS.items() if who.can(spec[1])}
        return page(
            request,
            who,
            "account.html",
            acct=acct,
            account_id=account_id,
            timeline=_merge_timeline(activity, decisions, who.sees_pii),
            held=held,
            problems=problems,
            actions=allowed,
            promises=promises,
            offers=offers,
            campaign=campaign,
            score=score,
            retries=retries,
            at_risk=any(r["at_risk"] for r in retries),
            upcoming=[
                t for t in (acct or {}).get("timers", []) if t["state"] in ("pending", "held", "deferred")
            ],
            intents=INTENTS,
        )

    @r.post("/accounts/{account_id}/act/{name}")
    async def act(
        request: Request,
        account_id: str,
        name: str,
        reason: str = Form("", max_length=2000),
        step: int | None = Form(None, ge=1, le=50),
        until: str | None = Form(None, max_length=40),
        channels: list[str] = Form([]),
        who: Principal = Depends(requires("accounts.work")),
    ) -> Response:
        here = f"/accounts/{account_id}"
        spec = ACTIONS.get(name)
        if spec is None:
            return back(here, error=f"unknown action {name}")
        suffix, permission, _ = spec
        if not who.can(permission):  # the owning service refuses too; say it plainly here
            return back(here, error=f"{name} needs the permission {permission}")
        body: dict[str, Any] = {"reason": reason}
        if "{step}" in suffix:
            if step is None:
                return back(here, error="choose a step")
            suffix = suffix.format(step=step)
        if name == "send-now":
            body["step"] = step
        if name in ("snooze", "pause") and until:
            body["until"] = _end_of(until)
        if name == "snooze" and "until" not in body:
            return back(here, error="snooze needs a date")
        if name in ("channel-preference", "do-not-contact"):
            body["channels"] = channels
        try:
            await upstreams(get_context()).call(
                request, who, "escalation", "POST", f"/accounts/{account_id}/{suffix}", json=body
            )
        except UpstreamError as e:
            return back(here, error=f"{name} refused: {e.detail}")
        return back(here, flash=f"{name} requested; the segmenter applies it within seconds")

    @r.post("/accounts/{account_id}/promise")
    async def promise(
        request: Request,
        account_id: str,
        due_date: date = Form(...),
        amount: str = Form("", max_length=30),
        currency: str = Form("USD", max_length=3),
        reason: str = Form("", max_length=2000),
        who: Principal = Depends(requires("accounts.work")),
    ) -> Response:
        here = f"/accounts/{account_id}"
        body: dict[str, Any] = {"due_date": due_date.isoformat(), "reason": reason}
        if amount.strip():
            try:
                body["amount_minor"] = to_minor(Decimal(amount.replace(",", "").strip()), currency)
            except (InvalidOperation, ValueError):
                return back(here, error=f"not an amount in {currency}: {amount}")
        try:
            await upstreams(get_context()).call(
                request, who, "escalation", "POST", f"{here}/promises", json=body
            )
        except UpstreamError as e:
            return back(here, error=f"promise refused: {e.detail}")
        return back(
            here, flash=f"promise to pay by {due_date.isoformat()} recorded; reminders wait until then"
        )

    @r.post("/accounts/{account_id}/offer")
    async def offer(
        request: Request,
        account_id: str,
        amount: str = Form(..., max_length=30),
        currency: str = Form("USD", max_length=3),
        expires_on: date = Form(...),
        note: str = Form("", max_length=2000),
        who: Principal = Depends(requires("settlements.offer")),
    ) -> Response:
        """A settlement offer (supervisors): escalation records it and the portal shows it to the customer."""
        here = f"/accounts/{account_id}"
        try:
            minor = to_minor(Decimal(amount.replace(",", "").strip()), currency)
        except (InvalidOperation, ValueError):
            return back(here, error=f"not an amount in {currency}: {amount}")
        body = {"amount_minor": minor, "expires_on": expires_on.isoformat(), "note": note}
        try:
            made = await upstreams(get_context()).call(
                request, who, "escalation", "POST", f"{here}/offers", json=body
            )
        except UpstreamError as e:
            return back(here, error=f"offer refused: {e.detail}")
        return back(
            here, flash=f"settlement offer {made['offer_id']} made; the customer sees it in the portal"
        )

    @r.post("/accounts/{account_id}/offers/{offer_id}/withdraw")
    async def withdraw_offer(
        request: Request,
        account_id: str,
        offer_id: str = Path(pattern=r"^[A-Za-z0-9_-]{1,64}$"),
        reason: str = Form("", max_length=2000),
        who: Principal = Depends(requires("settlements.offer")),
    ) -> Response:
        here = f"/accounts/{account_id}"
        try:
            path = f"{here}/offers/{offer_id}/withdraw"
            await upstreams(get_context()).call(
                request, who, "escalation", "POST", path, json={"reason": reason}
            )
        except UpstreamError as e:
            return back(here, error=f"withdrawal refused: {e.detail}")
        return back(here, flash=f"settlement offer {offer_id} withdrawn")

    @r.post("/accounts/{account_id}/replies/{reply_id}/intent")
    async def correct_intent(
        request: Request,
        account_id: str,
        reply_id: str,
        intent: Intent = Form(...),
        who: Principal = Depends(requires("accounts.work")),
    ) -> Response:
        here = f"/accounts/{account_id}"
        try:
            await upstreams(get_context()).call(
                request,
                who,
                "responses",
                "POST",
                f"/replies/{reply_id}/intent",
                json={"intent": intent.value},
            )
        except UpstreamError as e:
            return back(here, error=f"correction refused: {e.detail}")
        return back(here, flash=f"reply marked as {intent.value}; kept as a training example")

    @r.post("/accounts/{account_id}/note")
    async def note(
        request: Request,
        account_id: str,
        body: str = Form(..., min_length=1, max_length=5000),
        who: Principal = Depends(requires("accounts.work")),
    ) -> Response:
        here = f"/accounts/{account_id}"
        try:
            await upstreams(get_context()).call(
                request, who, "escalation", "POST", f"{here}/notes", json={"body": body}
            )
        except UpstreamError as e:
            return back(here, error=f"note refused: {e.detail}")
        return back(here, flash="note added")

    return r


def _end_of(day: str) -> str:
    """A date from a form (`2026-12-24`) -> the end of that day in UTC; a full timestamp passes through."""
    try:
        d = datetime.fromisoformat(day)
    except ValueError:
        return day
    if len(day) <= 10:
        d = datetime.combine(d.date(), time(23, 59), UTC)
    return (d if d.tzinfo else d.replace(tzinfo=UTC)).isoformat()
