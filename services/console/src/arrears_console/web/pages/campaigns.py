"""Campaigns (supervisor): the list with status, criteria, priority and any pause; create one, move it along its
lifecycle, pause or resume it — each a call to the owning service as the signed-in person.

Lifecycle (planned -> active -> completed | cancelled) belongs to the segmenter: `POST /campaigns/{id}/status`.
Pause / resume is a different thing: the lifecycle has no "paused" state, and docs/segmenter.md
("Overrides", "Campaign-wide") names the escalation service's `POST /campaigns/{id}/pause|resume` as the
person's action. It goes through escalation's overrides API like every other manual override: authorised
there (`campaigns.write`), written to its audit log with the person as the actor, and carried to the segmenter
as an `OverrideRequested` event, which records who paused it (`paused_by`) and logs the decision under
`campaign:<id>`. So pause and resume call escalation, and the lifecycle buttons call the segmenter.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from arrears_shared.auth import Principal, requires
from arrears_shared.events import AgingBucket
from arrears_shared.money import RateTable, configured_rates, format_minor, minor_exponent, to_decimal
from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import HTMLResponse, Response

from ...readmodels.views import today_utc
from ..templating import page
from ..upstream import UpstreamError
from .common import ContextGetter, back, upstreams

CampaignId = Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
BUCKETS = [b.value for b in AgingBucket]
RISK_BANDS = ["low", "medium", "high"]
HISTORIES = ["clean", "partial_payer", "broken_promise"]
# what each lifecycle state may go to (the segmenter enforces it; this only decides which buttons to show)
NEXT = {"planned": ["active", "cancelled"], "active": ["completed", "cancelled"]}
VERB = {"active": "Activate", "completed": "Complete", "cancelled": "Cancel"}


def _minor(amount: str, currency: str) -> int | None:
    """ "1,500.00" in the reporting currency -> minor units; blank -> None; ValueError if not an amount."""
    amount = amount.strip().replace(",", "")
    if not amount:
        return None
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise ValueError(f"{amount!r} is not an amount") from None
    if value < 0 or not value.is_finite():
        raise ValueError(f"{amount!r} is not an amount")
    return int(value.scaleb(minor_exponent(currency)).to_integral_value())


def describe(criteria: dict[str, Any], currency: str) -> list[str]:
    """Criteria as short phrases for the list ("balance ≥ 5,000.00 USD", "aging 91-120, 120+")."""
    out = []
    lo, hi = criteria.get("min_balance_minor"), criteria.get("max_balance_minor")
    if lo is not None:
        out.append(f"balance ≥ {format_minor(lo, currency)}")
    if hi is not None:
        out.append(f"balance ≤ {format_minor(hi, currency)}")
    if criteria.get("aging_buckets"):
        out.append("aging " + ", ".join(criteria["aging_buckets"]))
    dlo, dhi = criteria.get("min_days_past_due"), criteria.get("max_days_past_due")
    if dlo is not None or dhi is not None:
        out.append(f"days past due {dlo if dlo is not None else 0}–{dhi if dhi is not None else '∞'}")
    for key, label in (("risk_bands", "risk"), ("histories", "history"), ("countries", "country")):
        if criteria.get(key):
            out.append(f"{label} " + ", ".join(criteria[key]))
    return out or ["every account"]


def progress(campaign: dict[str, Any], collected: list[dict[str, Any]], rates: RateTable) -> dict[str, Any]:
    """Collected vs goal for one campaign, in the reporting currency of `rates`: escalation's per-currency
    figures (payments attributed to the campaign as the KPIs attribute them) converted and summed. The
    collection rate is collected / (collected + what the paying accounts still owe). `unpriced` names the
    currencies without a rate (left out, and said so)."""
    paid = owed = payments = 0
    unpriced: list[str] = []
    for c in collected:
        p = rates.to_reporting_minor(c["collected_minor"], c["currency"])
        o = rates.to_reporting_minor(c["owed_minor"], c["currency"])
        if p is None or o is None:
            unpriced.append(c["currency"] or "?")
            continue
        paid, owed, payments = paid + p, owed + o, payments + c["payments"]
    goal = campaign.get("goal_minor")
    goal_rep = rates.to_reporting_minor(goal, campaign.get("goal_currency")) if goal is not None else None
    return {
        "collected_minor": paid,
        "payments": payments,
        "rate": paid / (paid + owed) if paid + owed else None,
        "goal_minor": goal_rep,
        "goal_amount": str(to_decimal(goal_rep, rates.reporting_currency)) if goal_rep is not None else "",
        "share": (paid / goal_rep) if goal_rep else None,
        "unpriced": sorted(set(unpriced)),
    }


def router(get_context: ContextGetter) -> APIRouter:
    r = APIRouter(tags=["web"], include_in_schema=False)
    reader = Depends(requires("reports.read"))
    writer = Depends(requires("campaigns.write"))

    @r.get("/campaigns", response_class=HTMLResponse)
    async def list_(request: Request, who: Principal = reader) -> HTMLResponse:
        currency = configured_rates().reporting_currency
        ctx: dict[str, Any] = {
            "currency": currency,
            "buckets": BUCKETS,
            "risk_bands": RISK_BANDS,
            "histories": HISTORIES,
            "next_states": NEXT,
            "verbs": VERB,
        }
        up = upstreams(get_context())
        try:
            found, _ = await up.walk(request, who, "segmenter", "/campaigns", at_most=10_000)
        except UpstreamError as e:
            return page(request, who, "campaigns.html", status=502, campaigns=[], unavailable=e.detail, **ctx)
        by_campaign: dict[str, list[dict[str, Any]]] = {}
        figures_unavailable = ""
        if found:  # collected since the oldest campaign began (nothing is attributed to one before it)
            first = min(date.fromisoformat(c["created_at"][:10]) for c in found)
            try:
                for row in await up.call(
                    request, who, "escalation", "GET", "/collection-metrics/campaigns",
                    params={"from": first.isoformat(), "to": today_utc().isoformat()},
                ) or []:  # fmt: skip
                    by_campaign.setdefault(row["campaign_id"], []).append(row)
            except UpstreamError as e:
                figures_unavailable = e.detail
        rates = configured_rates()
        for c in found:
            c["criteria_text"] = describe(c.get("criteria") or {}, currency)
            c["progress"] = progress(c, by_campaign.get(c["campaign_id"], []), rates)
        return page(
            request,
            who,
            "campaigns.html",
            campaigns=found,
            unavailable="",
            figures_unavailable=figures_unavailable,
            **ctx,
        )

    @r.post("/campaigns")
    async def create(
        request: Request,
        campaign_id: str = Form(..., max_length=64),
        name: str = Form(..., max_length=200),
        owner: str = Form(..., max_length=200),
        goal: str = Form("", max_length=2000),
        goal_amount: str = Form("", max_length=30),
        priority: int = Form(0, ge=-100_000, le=100_000),
        min_balance: str = Form("", max_length=30),
        max_balance: str = Form("", max_length=30),
        aging_buckets: list[str] = Form([]),
        min_days_past_due: str = Form("", max_length=6),
        max_days_past_due: str = Form("", max_length=6),
        risk_bands: list[str] = Form([]),
        histories: list[str] = Form([]),
        countries: str = Form("", max_length=500),
        who: Principal = writer,
    ) -> Response:
        currency = configured_rates().reporting_currency
        try:
            criteria: dict[str, Any] = {
                "min_balance_minor": _minor(min_balance, currency),
                "max_balance_minor": _minor(max_balance, currency),
                "aging_buckets": aging_buckets or None,
                "min_days_past_due": int(min_days_past_due) if min_days_past_due.strip() else None,
                "max_days_past_due": int(max_days_past_due) if max_days_past_due.strip() else None,
                "risk_bands": risk_bands or None,
                "histories": histories or None,
                "countries": [c.strip().upper() for c in countries.split(",") if c.strip()] or None,
            }
            goal_minor = _minor(goal_amount, currency)
        except ValueError as e:
            return back("/campaigns", error=f"campaign not created: {e}")
        body = {
            **({"goal_minor": goal_minor, "goal_currency": currency} if goal_minor is not None else {}),
            "campaign_id": campaign_id.strip(),
            "name": name.strip(),
            "owner": owner.strip(),
            "goal": goal.strip(),
            "priority": priority,
            "criteria": {k: v for k, v in criteria.items() if v is not None},
        }
        try:
            await upstreams(get_context()).call(request, who, "segmenter", "POST", "/campaigns", json=body)
        except UpstreamError as e:
            return back("/campaigns", error=f"campaign not created: {e.detail}")
        return back(
            "/campaigns", flash=f"campaign {body['campaign_id']} created (planned): activate it to use it"
        )

    @r.post("/campaigns/{campaign_id}/goal")
    async def set_goal(
        request: Request,
        campaign_id: str = CampaignId,
        goal: str = Form("", max_length=2000),
        goal_amount: str = Form("", max_length=30),
        who: Principal = writer,
    ) -> Response:
        """The campaign's goal (text and amount in the reporting currency; an empty amount clears it),
        changed in the segmenter as the signed-in person (audited there)."""
        currency = configured_rates().reporting_currency
        try:
            minor = _minor(goal_amount, currency)
        except ValueError as e:
            return back("/campaigns", error=f"{campaign_id}: {e}")
        body = {
            "goal": goal.strip(),
            "goal_minor": minor,
            "goal_currency": currency if minor is not None else None,
        }
        try:
            await upstreams(get_context()).call(
                request, who, "segmenter", "PATCH", f"/campaigns/{campaign_id}", json=body
            )
        except UpstreamError as e:
            return back("/campaigns", error=f"{campaign_id}: {e.detail}")
        shown = format_minor(minor, currency) if minor is not None else "none"
        return back("/campaigns", flash=f"campaign {campaign_id}: goal {shown}")

    @r.post("/campaigns/{campaign_id}/status")
    async def status(
        request: Request,
        campaign_id: str = CampaignId,
        to: Literal["active", "completed", "cancelled"] = Form(...),
        who: Principal = writer,
    ) -> Response:
        try:
            await upstreams(get_context()).call(
                request, who, "segmenter", "POST", f"/campaigns/{campaign_id}/status", json={"status": to}
            )
        except UpstreamError as e:
            return back("/campaigns", error=f"{campaign_id}: {e.detail}")
        return back("/campaigns", flash=f"campaign {campaign_id} is now {to}")

    @r.post("/campaigns/{campaign_id}/{action}")
    async def pause_or_resume(
        request: Request,
        action: Literal["pause", "resume"],
        campaign_id: str = CampaignId,
        reason: str = Form("", max_length=2000),
        until: str = Form("", max_length=40),
        who: Principal = writer,
    ) -> Response:
        # escalation's campaign override (see the module docstring for why not the segmenter's status)
        body: dict[str, Any] = {"reason": reason.strip()}
        if action == "pause" and until.strip():  # the form's field is a UTC date and time (no zone given)
            body["until"] = until.strip() + ("" if until.strip().endswith("Z") or "+" in until else "Z")
        try:
            await upstreams(get_context()).call(
                request, who, "escalation", "POST", f"/campaigns/{campaign_id}/{action}", json=body
            )
        except UpstreamError as e:
            return back("/campaigns", error=f"{action} {campaign_id} failed: {e.detail}")
        done = "pause requested" if action == "pause" else "resume requested"
        return back(
            "/campaigns",
            flash=f"campaign {campaign_id}: {done}; the segmenter applies it within seconds",
        )

    return r
