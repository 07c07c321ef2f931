"""Stripe-style Checkout Sessions emulator.

The API (https://docs.stripe.com/api/checkout/sessions), authenticated with the secret key as HTTP basic
user (``-u sk_test_…:``) or bearer token, form-encoded bodies, Stripe's error bodies:

- ``POST /v1/checkout/sessions`` — create (see `sessions.build` for the parameters); ``Idempotency-Key``
  honoured for 24 hours: the same key with the same body answers the first response again
  (``Idempotent-Replayed: true``), with another body 400 ``idempotency_error``;
- ``GET /v1/checkout/sessions/{id}`` — retrieve (``expand[]=line_items`` includes the items);
- ``POST /v1/checkout/sessions/{id}/expire`` — expire an open session.

The hosted page ``GET /c/pay/{id}`` shows the amount and a card form; ``POST /c/pay/{id}`` pays (test cards
``4000 0000 0000 0002`` / ``…9995`` are declined), completes the session (``payment_status=paid``, a new
``pi_…`` PaymentIntent), records the payment in the ledger, sends the signed ``checkout.session.completed``
and ``payment_intent.succeeded`` events to the webhook endpoint (retried on non-2xx) and redirects (303) to
``success_url``. Paying a completed session again just redirects: one payment per session.

Fault injection (``/_emulator/faults``; operations ``checkout.sessions.create``,
``checkout.sessions.retrieve``, ``checkout.sessions.expire``) and a rate limit per key (Stripe's test mode
allows 25 requests/s) answer 5xx / 429 as Stripe does. ``GET /_emulator/webhooks`` lists the events and
delivery attempts; ``GET /_emulator/sessions`` every session.

``create_app(CheckoutConfig(...))`` in-process; ``python -m arrears_emulators checkout --port N --set
webhook_url='"http://…/ingest/payments/stripe"' --set webhook_secret='"whsec_…"'`` otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from arrears_emulators.checkout import page
from arrears_emulators.checkout import sessions as sess
from arrears_emulators.checkout.forms import FormError, decode
from arrears_emulators.checkout.webhooks import WebhookSender
from arrears_emulators.common import (
    DroppedResponse,
    EmulatorCore,
    LimitsConfig,
    install_control,
    retry_after_header,
)

DEFAULT_SECRET_KEY = "sk_test_arrears_checkout_emulator"
DEFAULT_WEBHOOK_SECRET = "whsec_arrears_checkout_emulator"
API_VERSION = "2024-06-20"
IDEMPOTENCY_TTL_S = 24 * 3600


class CheckoutConfig(BaseModel):
    secret_key: str = DEFAULT_SECRET_KEY
    webhook_url: str | None = Field(
        None, description="the webhook endpoint (ingest's /ingest/payments/stripe)"
    )
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    enabled_events: list[str] = Field(
        default_factory=lambda: ["checkout.session.completed", "payment_intent.succeeded"],
        description="event types sent to the endpoint (as a Stripe webhook endpoint's enabled_events)",
    )
    public_url: str | None = Field(None, description="base of hosted page URLs (default: the request's base)")
    min_amount: int = Field(50, ge=1, description="smallest session total in minor units (Stripe: 0.50 USD)")
    webhook_max_attempts: int = Field(6, ge=1)
    webhook_initial_backoff_s: float = Field(0.5, gt=0)
    webhook_max_backoff_s: float = Field(30.0, gt=0)
    webhook_timeout_s: float = Field(10.0, gt=0)
    limits: LimitsConfig = Field(default_factory=lambda: LimitsConfig(rate=25.0))
    seed: int | None = None


Config = CheckoutConfig


def error(status: int, message: str, *, type_: str = "invalid_request_error", **extra: Any) -> JSONResponse:
    body = {"error": {"type": type_, "message": message, **{k: v for k, v in extra.items() if v is not None}}}
    return JSONResponse(body, status_code=status, headers={"Request-Id": "req_" + secrets.token_hex(7)})


def ok(body: dict[str, Any], *, replayed: bool = False) -> JSONResponse:
    headers = {"Request-Id": "req_" + secrets.token_hex(7), "Stripe-Version": API_VERSION}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body, headers=headers)


def create_app(config: CheckoutConfig | None = None) -> FastAPI:
    cfg = config or CheckoutConfig()
    core = EmulatorCore("checkout", limits=cfg.limits, seed=cfg.seed)
    store: dict[str, dict[str, Any]] = {}
    idempotency: dict[str, tuple[str, float, dict[str, Any]]] = {}  # key -> (body hash, at, response)
    hooks = WebhookSender(
        url=cfg.webhook_url,
        secret=cfg.webhook_secret,
        max_attempts=cfg.webhook_max_attempts,
        initial_backoff_s=cfg.webhook_initial_backoff_s,
        max_backoff_s=cfg.webhook_max_backoff_s,
        timeout_s=cfg.webhook_timeout_s,
    )

    async def reset() -> None:
        store.clear()
        idempotency.clear()
        await hooks.reset()

    core.on_reset(reset)
    core.add_stats(lambda: {"sessions": len(store), **hooks.stats()})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        core.faults.release_hanging()
        await hooks.aclose()

    app = FastAPI(title="Stripe Checkout Sessions emulator", lifespan=lifespan)
    install_control(app, core)

    def authorize(request: Request) -> JSONResponse | None:
        scheme, _, raw = request.headers.get("authorization", "").partition(" ")
        key = ""
        if scheme.lower() == "bearer":
            key = raw.strip()
        elif scheme.lower() == "basic":
            try:
                key = base64.b64decode(raw).decode().partition(":")[0]
            except (ValueError, UnicodeDecodeError):
                key = ""
        if not key:
            return error(401, "You did not provide an API key.")
        if not secrets.compare_digest(key.encode(), cfg.secret_key.encode()):
            return error(401, f"Invalid API Key provided: {key[:8]}********")
        return None

    async def gate(operation: str) -> JSONResponse | bool:
        result = await core.gate(operation, key=cfg.secret_key)
        if result.retry_after_s is not None:
            response = error(429, "Too many requests hit the API too quickly.", code="rate_limit")
            response.headers["Retry-After"] = retry_after_header(result.retry_after_s)
            return response
        if result.fail_status is not None:
            return error(result.fail_status, "An unknown error occurred", type_="api_error")
        return result.drop_after

    def base_of(request: Request) -> str:
        return (cfg.public_url or str(request.base_url)).rstrip("/")

    def event(type_: str, obj: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "evt_" + secrets.token_hex(12),
            "object": "event",
            "api_version": API_VERSION,
            "created": int(time.time()),
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": type_,
        }

    api = APIRouter(prefix="/v1")

    @api.post("/checkout/sessions")
    async def create_session(request: Request) -> Response:
        refused = authorize(request)
        if refused is not None:
            return refused
        gated = await gate("checkout.sessions.create")
        if isinstance(gated, JSONResponse):
            return gated
        body = await request.body()
        key = request.headers.get("idempotency-key")
        digest = hashlib.sha256(body).hexdigest()
        now = time.time()
        if key:
            if len(key) > 255:
                return error(400, "Idempotency-Key is at most 255 characters.", type_="idempotency_error")
            seen = idempotency.get(key)
            if seen is not None and now - seen[1] < IDEMPOTENCY_TTL_S:
                if seen[0] != digest:
                    return error(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters they were "
                        "first used with. Try using a key other than "
                        f"'{key}' if you meant to execute a different request.",
                        type_="idempotency_error",
                    )
                return ok(seen[2], replayed=True)
        try:
            session = sess.build(decode(body), min_amount=cfg.min_amount, hosted_base=base_of(request))
        except FormError as e:
            return error(400, str(e))
        except sess.ParamError as e:
            return error(400, str(e), param=e.param, code=e.code)
        store[session["id"]] = session
        answer = sess.public(session)
        if key:
            idempotency[key] = (digest, now, answer)
        core.ledger.record(
            provider_id=session["id"],
            recipient=session["client_reference_id"] or session["id"],
            operation="session",
            content=None,
            dropped=gated,
            details={"amount_total": session["amount_total"], "currency": session["currency"], "key": key},
        )
        if gated:
            return DroppedResponse(json.dumps(answer).encode(), media_type="application/json")
        return ok(answer)

    @api.get("/checkout/sessions/{session_id}")
    async def retrieve_session(session_id: str, request: Request) -> Response:
        refused = authorize(request)
        if refused is not None:
            return refused
        gated = await gate("checkout.sessions.retrieve")
        if isinstance(gated, JSONResponse):
            return gated
        session = store.get(session_id)
        if session is None:
            return error(
                404, f"No such checkout.session: '{session_id}'", code="resource_missing", param="id"
            )
        answer = sess.public(sess.refresh(session))
        try:
            expand = decode(request.url.query.encode()).get("expand", [])
        except FormError as e:
            return error(400, str(e))
        if "line_items" in (expand if isinstance(expand, list) else [expand]):
            answer["line_items"] = session["line_items"]
        return ok(answer)

    @api.post("/checkout/sessions/{session_id}/expire")
    async def expire_session(session_id: str, request: Request) -> Response:
        refused = authorize(request)
        if refused is not None:
            return refused
        gated = await gate("checkout.sessions.expire")
        if isinstance(gated, JSONResponse):
            return gated
        session = store.get(session_id)
        if session is None:
            return error(
                404, f"No such checkout.session: '{session_id}'", code="resource_missing", param="id"
            )
        if sess.refresh(session)["status"] != "open":
            return error(
                400,
                f"Only Checkout Sessions with a status of `open` can be expired. This "
                f"Checkout Session has a status of `{session['status']}`.",
                code="session_not_open",
            )
        session.update(status="expired", url=None)
        if "checkout.session.expired" in cfg.enabled_events:
            hooks.emit(event("checkout.session.expired", sess.public(session)))
        return ok(sess.public(session))

    hosted = APIRouter(prefix="/c/pay")
    html_headers = {
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action *",
        "Referrer-Policy": "no-referrer",
    }

    def html(text: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(text, status_code=status, headers=html_headers)

    @hosted.get("/{session_id}")
    async def pay_page(session_id: str) -> Response:
        session = store.get(session_id)
        if session is None:
            return html(page.message_page("Not found", "This payment page does not exist."), 404)
        sess.refresh(session)
        if session["status"] == "complete" and session["success_url"]:
            return RedirectResponse(sess.redirect_url(session["success_url"], session_id), 303)
        if session["status"] != "open":
            return html(page.message_page("Expired", "This payment page has expired."), 410)
        return html(page.pay_page(session))

    @hosted.post("/{session_id}")
    async def pay(session_id: str, request: Request) -> Response:
        session = store.get(session_id)
        if session is None:
            return html(page.message_page("Not found", "This payment page does not exist."), 404)
        sess.refresh(session)
        if session["status"] == "complete":  # a double submit: one payment per session
            if session["success_url"]:
                return RedirectResponse(sess.redirect_url(session["success_url"], session_id), 303)
            return html(page.message_page("Paid", "Thank you, your payment was received."))
        if session["status"] != "open":
            return html(page.message_page("Expired", "This payment page has expired."), 410)
        form = dict(parse_qsl((await request.body()).decode(errors="replace")))
        card = "".join(ch for ch in form.get("card_number", "") if ch.isdigit())
        if len(card) < 12:
            return html(page.pay_page(session, "Your card number is incomplete."), 400)
        if card in page.DECLINED_CARDS:
            return html(page.pay_page(session, "Your card was declined."), 402)
        now = int(time.time())
        pi_id = "pi_" + secrets.token_hex(12)
        session.update(status="complete", payment_status="paid", payment_intent=pi_id, url=None)
        intent = {
            "id": pi_id,
            "object": "payment_intent",
            "amount": session["amount_total"],
            "amount_received": session["amount_total"],
            "currency": session["currency"],
            "created": now,
            "latest_charge": "ch_" + secrets.token_hex(12),
            "livemode": False,
            "metadata": session["_payment_intent_metadata"],
            "status": "succeeded",
        }
        session["_payment_intent"] = intent
        core.ledger.record(
            provider_id=pi_id,
            recipient=session["client_reference_id"] or session_id,
            operation="payment",
            thread_id=session_id,
            content=page.money(session["amount_total"], session["currency"]),
            details={
                "session_id": session_id,
                "amount": session["amount_total"],
                "currency": session["currency"],
                "card_last4": card[-4:],
                "metadata": session["metadata"],
            },
        )
        for type_, obj in (
            ("checkout.session.completed", sess.public(session)),
            ("payment_intent.succeeded", intent),
        ):
            if type_ in cfg.enabled_events:
                hooks.emit(event(type_, obj))
        if session["success_url"]:
            return RedirectResponse(sess.redirect_url(session["success_url"], session_id), 303)
        return html(page.message_page("Paid", "Thank you, your payment was received."))

    control = APIRouter(prefix="/_emulator", tags=["emulator control"])

    @control.get("/webhooks")
    async def webhooks() -> dict[str, Any]:
        return {"events": list(hooks.events), "attempts": list(hooks.attempts), **hooks.stats()}

    @control.get("/sessions")
    async def all_sessions() -> list[dict[str, Any]]:
        return [sess.public(sess.refresh(s)) for s in store.values()]

    app.include_router(api)
    app.include_router(hosted)
    app.include_router(control)
    return app
