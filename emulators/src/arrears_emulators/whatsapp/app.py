"""WhatsApp Business Cloud API emulator: ``POST /{version}/{phone_number_id}/messages`` with Bearer auth,
template and text messages, the 24-hour customer-service window, throughput and pair rate limits, Graph
error bodies, signed status / inbound-message webhooks, fault injection and a send ledger.

What it does as the real API does (https://developers.facebook.com/docs/whatsapp/cloud-api):

- A send is answered ``{"messaging_product": "whatsapp", "contacts": [{"input", "wa_id"}], "messages":
  [{"id": "wamid...", "message_status": "accepted"}]}``; ``biz_opaque_callback_data`` given with the send is
  echoed in every status webhook of that message.
- ``type: "template"`` needs an approved template in the requested language (else 132001, HTTP 404) with
  exactly its number of body parameters (else 132000). ``type: "text"`` is only delivered inside the
  24-hour customer-service window opened by the customer's last message (else 131047, re-engagement).
- A number that is not on WhatsApp is *accepted* and then reported by a ``failed`` status webhook with
  error 131026 (the API cannot tell synchronously).
- Throughput per phone number (130429) and per (business, customer) pair (131056, about one message per 6 s
  with a burst), both answered HTTP 400 as Meta documents (``rate_limit_status`` changes that).
- Invalid token: 190, HTTP 401. Graph sends no ``Retry-After``.

Control API under ``/_emulator/`` (besides the common ledger / faults / limits / stats / reset):
``POST /_emulator/errors`` (answer the next N sends with a WhatsApp error code and HTTP status),
``POST /_emulator/inbound`` (a customer message: opens that number's window, webhook ``messages``),
``PUT /_emulator/numbers`` (numbers not on WhatsApp), ``PUT /_emulator/webhook`` (callback URL, optionally
verified with the GET ``hub.challenge`` handshake), ``GET /_emulator/events`` (every webhook built),
``GET /_emulator/messages/{wamid}`` (a message as the emulator holds it).

``create_app(WhatsAppConfig(...))`` for in-process use; ``python -m arrears_emulators whatsapp --port N
[--config FILE.json] [--set field=value]`` otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from arrears_emulators.common import DroppedResponse, EmulatorCore, LimitsConfig, install_control
from arrears_emulators.whatsapp.graph import RATE_LIMIT_CODES, default_status, graph_error, webhook_error
from arrears_emulators.whatsapp.webhooks import WebhookSender

WINDOW_S = 24 * 3600
_VERSION = re.compile(r"^v\d{1,2}\.\d$")
_DIGITS = re.compile(r"\D")


class TemplateSpec(BaseModel):
    """An approved message template: the language codes it is approved in and its body parameter count."""

    languages: list[str] = Field(min_length=1)
    body_params: int = Field(0, ge=0)
    category: Literal["utility", "marketing", "authentication"] = "utility"


def _default_templates() -> dict[str, TemplateSpec]:
    return {
        "arrears_payment_reminder": TemplateSpec(languages=["en_US", "es_MX"], body_params=3),
        "arrears_payment_overdue": TemplateSpec(languages=["en_US", "es_MX"], body_params=4),
        "arrears_final_notice": TemplateSpec(languages=["en_US", "es_MX"], body_params=4),
        "arrears_opt_out_confirmed": TemplateSpec(languages=["en_US", "es_MX"], body_params=1),
        "arrears_help": TemplateSpec(languages=["en_US", "es_MX"], body_params=1),
    }


class WhatsAppConfig(BaseModel):
    access_token: str | None = Field(
        "emulator-access-token", description="expected Bearer token; None accepts any non-empty token"
    )
    phone_number_id: str = Field("106540352242922", description="our business phone number's id")
    display_phone_number: str = Field("15550783881", description="our number as webhooks show it")
    waba_id: str = Field("102290129340398", description="WhatsApp Business Account id (webhook entry id)")
    app_secret: str = Field("emulator-app-secret", description="signs webhooks (X-Hub-Signature-256)")
    webhook_url: str | None = Field(None, description="callback URL for status and inbound webhooks")
    templates: dict[str, TemplateSpec] = Field(default_factory=_default_templates)
    throughput_per_s: float = Field(80.0, gt=0, description="messages per second per phone number (130429)")
    pair_rate_per_s: float = Field(1 / 6, gt=0, description="messages per second to one customer (131056)")
    pair_burst: float = Field(45.0, ge=1, description="burst allowed to one customer before 131056")
    rate_limit_status: int = Field(400, description="HTTP status of 130429 / 131056 (Meta documents 400)")
    not_on_whatsapp: set[str] = Field(
        default_factory=set, description="numbers (digits or E.164) accepted, then failed with 131026"
    )
    status_delay_ms: int = Field(20, ge=0, description="accepted -> sent -> delivered, each after this delay")
    send_read_status: bool = Field(False, description="also report 'read' after 'delivered'")
    webhook_max_attempts: int = Field(6, ge=1)
    webhook_initial_backoff_s: float = Field(0.2, ge=0)
    webhook_max_backoff_s: float = Field(10.0, ge=0)
    webhook_timeout_s: float = Field(5.0, gt=0)
    seed: int | None = None


Config = WhatsAppConfig  # what `python -m arrears_emulators whatsapp --config/--set` fills


# -- request bodies --------------------------------------------------------------------------------------
class _Language(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str
    policy: str | None = None


class _Parameter(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class _Component(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    parameters: list[_Parameter] = Field(default_factory=list)


class _Template(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    language: _Language
    components: list[_Component] = Field(default_factory=list)


class _Text(BaseModel):
    model_config = ConfigDict(extra="allow")
    body: str = Field(min_length=1, max_length=4096)
    preview_url: bool = False


class SendBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    messaging_product: str
    recipient_type: str = "individual"
    to: str = Field(min_length=1)
    type: str = "text"
    text: _Text | None = None
    template: _Template | None = None
    biz_opaque_callback_data: str | None = Field(None, max_length=512)


class InjectErrors(BaseModel):
    """Body of ``POST /_emulator/errors``: the next `count` sends get this error (after auth)."""

    code: int
    status: int | None = Field(None, description="HTTP status (default: the one Meta documents for the code)")
    count: int = Field(1, ge=0)
    details: str | None = None


class InboundMessage(BaseModel):
    """Body of ``POST /_emulator/inbound``: a customer's message to our number."""

    model_config = ConfigDict(populate_by_name=True)
    from_: str = Field(alias="from", description="the customer's number (digits or E.164)")
    text: str = "Hello"
    name: str = "Customer"
    age_s: float = Field(0.0, ge=0, description="how long ago the customer wrote (window tests)")
    context_id: str | None = Field(None, description="wamid the customer replied to")


class NumberSets(BaseModel):
    not_on_whatsapp: list[str]


class WebhookTarget(BaseModel):
    url: str | None
    verify_token: str | None = Field(None, description="verify the URL with the GET hub.challenge handshake")
    app_secret: str | None = None


# -- state ------------------------------------------------------------------------------------------------
@dataclass
class StoredMessage:
    wamid: str
    to: str
    wa_id: str
    type: str
    body: dict[str, Any]
    biz_opaque_callback_data: str | None
    created_at: float
    statuses: list[str] = field(default_factory=list)


def wa_id_of(number: str) -> str:
    return _DIGITS.sub("", number)


def new_wamid() -> str:
    return "wamid." + base64.b64encode(b"HBgL" + secrets.token_bytes(24)).decode().rstrip("=")


class WhatsAppState:
    def __init__(self, config: WhatsAppConfig) -> None:
        self.config = config
        self.messages: dict[str, StoredMessage] = {}
        self.windows: dict[str, float] = {}  # wa_id -> unix time of the customer's last message
        self.not_on_whatsapp = {wa_id_of(n) for n in config.not_on_whatsapp}
        self.injected: list[InjectErrors] = []
        self.pairs: dict[str, tuple[float, float]] = {}  # wa_id -> (tokens, at)
        self.webhooks = WebhookSender(
            url=config.webhook_url,
            app_secret=config.app_secret,
            max_attempts=config.webhook_max_attempts,
            initial_backoff_s=config.webhook_initial_backoff_s,
            max_backoff_s=config.webhook_max_backoff_s,
            timeout_s=config.webhook_timeout_s,
        )

    def take_injected(self) -> InjectErrors | None:
        while self.injected:
            head = self.injected[0]
            if head.count <= 0:
                self.injected.pop(0)
                continue
            head.count -= 1
            return head
        return None

    def pair_allows(self, wa_id: str, now: float) -> bool:
        cfg = self.config
        tokens, at = self.pairs.get(wa_id, (cfg.pair_burst, now))
        tokens = min(cfg.pair_burst, tokens + (now - at) * cfg.pair_rate_per_s)
        if tokens >= 1:
            self.pairs[wa_id] = (tokens - 1, now)
            return True
        self.pairs[wa_id] = (tokens, now)
        return False

    def window_open(self, wa_id: str, now: float) -> bool:
        last = self.windows.get(wa_id)
        return last is not None and now - last < WINDOW_S

    async def reset(self) -> None:
        await self.webhooks.reset()
        self.messages.clear()
        self.windows.clear()
        self.injected.clear()
        self.pairs.clear()
        self.not_on_whatsapp = {wa_id_of(n) for n in self.config.not_on_whatsapp}
        self.webhooks.url = self.config.webhook_url
        self.webhooks.app_secret = self.config.app_secret

    # -- webhook payloads --------------------------------------------------------------------------------
    def envelope(self, value: dict[str, Any]) -> dict[str, Any]:
        cfg = self.config
        return {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": cfg.waba_id,
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": cfg.display_phone_number,
                                    "phone_number_id": cfg.phone_number_id,
                                },
                                **value,
                            },
                        }
                    ],
                }
            ],
        }

    def status_payload(
        self, m: StoredMessage, status: str, errors: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": m.wamid,
            "status": status,
            "timestamp": str(int(time.time())),
            "recipient_id": m.wa_id,
        }
        if m.biz_opaque_callback_data is not None:
            item["biz_opaque_callback_data"] = m.biz_opaque_callback_data
        if status in ("sent", "delivered"):
            category = "service" if m.type == "text" else self._category(m)
            item["pricing"] = {
                "billable": True,
                "pricing_model": "PMP",
                "type": "regular",
                "category": category,
            }
        if errors:
            item["errors"] = errors
        return self.envelope({"statuses": [item]})

    def _category(self, m: StoredMessage) -> str:
        spec = self.config.templates.get(str(m.body.get("template", {}).get("name")))
        return spec.category if spec else "utility"


def create_app(config: WhatsAppConfig | None = None) -> FastAPI:
    cfg = config or WhatsAppConfig()
    core = EmulatorCore("whatsapp", limits=LimitsConfig(rate=cfg.throughput_per_s), seed=cfg.seed)
    state = WhatsAppState(cfg)
    core.on_reset(state.reset)
    core.add_stats(state.webhooks.stats)
    core.add_stats(lambda: {"messages_stored": len(state.messages), "open_windows": len(state.windows)})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        core.faults.release_hanging()
        await state.webhooks.aclose()

    app = FastAPI(title="WhatsApp Business Cloud API emulator", lifespan=lifespan)
    install_control(app, core)
    app.state.whatsapp = state

    def authorize(request: Request) -> str | JSONResponse:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return graph_error(
                190,
                message="An active access token must be used to query information about the current user.",
            )
        if cfg.access_token is not None and token.strip() != cfg.access_token:
            return graph_error(190)
        return token.strip()

    def deliver_statuses(m: StoredMessage) -> None:
        async def run() -> None:
            delay = cfg.status_delay_ms / 1000.0
            await asyncio.sleep(delay)
            if m.wa_id in state.not_on_whatsapp:
                m.statuses.append("failed")
                state.webhooks.emit(state.status_payload(m, "failed", [webhook_error(131026)]))
                return
            sequence = ["sent", "delivered"] + (["read"] if cfg.send_read_status else [])
            for i, status in enumerate(sequence):
                if i:
                    await asyncio.sleep(delay)
                m.statuses.append(status)
                state.webhooks.emit(state.status_payload(m, status))

        state.webhooks.spawn(run())

    def validation_error(exc: ValidationError) -> JSONResponse:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        code = 131008 if err["type"] == "missing" else 100
        return graph_error(code, f"Parameter '{where}': {err['msg']}")

    def check_template(body: SendBody) -> JSONResponse | None:
        t = body.template
        if t is None:
            return graph_error(131008, "Parameter 'template' is required for type template")
        spec = cfg.templates.get(t.name)
        if spec is None or t.language.code not in spec.languages:
            return graph_error(132001, f"template name ({t.name}) does not exist in {t.language.code}")
        given = sum(len(c.parameters) for c in t.components if c.type.lower() == "body")
        if given != spec.body_params:
            return graph_error(
                132000,
                f"body: number of localizable_params ({given}) does not match the expected number of params"
                f" ({spec.body_params})",
            )
        for c in t.components:
            for p in c.parameters:
                if p.type == "text" and (not p.text or "\n" in p.text or "\t" in p.text or "     " in p.text):
                    return graph_error(
                        131009,
                        "Param text cannot have new-line/tab characters or more than 4 consecutive spaces",
                    )
        return None

    api = APIRouter()

    @api.post("/{version}/{phone_number_id}/messages")
    async def send_message(request: Request, version: str, phone_number_id: str) -> Any:
        token = authorize(request)
        if isinstance(token, JSONResponse):
            return token
        if not _VERSION.match(version):
            return graph_error(100, message=f"Unknown path components: /{version}")
        if phone_number_id != cfg.phone_number_id:
            return graph_error(
                100,
                message=f"Unsupported post request. Object with ID '{phone_number_id}' does not exist, cannot be"
                " loaded due to missing permissions, or does not support this operation.",
            )
        raw = await request.body()  # before the gate: a hanging fault may outlive the client's connection
        injected = state.take_injected()
        if injected is not None:
            core.stats.record_operation("send")
            return graph_error(injected.code, injected.details, status=injected.status)
        result = await core.gate("send", key=phone_number_id)
        if result.retry_after_s is not None:
            return graph_error(130429, status=cfg.rate_limit_status)
        if result.fail_status is not None:
            code = 131016 if result.fail_status == 503 else 131000
            return graph_error(code, status=result.fail_status)
        try:
            body = SendBody.model_validate(json.loads(raw or b"null"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return graph_error(100, "Request body is not valid JSON")
        except ValidationError as exc:
            return validation_error(exc)
        if body.messaging_product != "whatsapp":
            return graph_error(100, "Parameter 'messaging_product' must be 'whatsapp'")
        wa_id = wa_id_of(body.to)
        if not 8 <= len(wa_id) <= 15:
            return graph_error(100, f"Invalid parameter 'to': {body.to}")
        if wa_id == wa_id_of(cfg.display_phone_number):
            return graph_error(131021)
        now = time.time()
        if body.type == "template":
            problem = check_template(body)
            if problem is not None:
                return problem
            content = body.template.name if body.template else None
        elif body.type == "text":
            if body.text is None:
                return graph_error(131008, "Parameter 'text' is required for type text")
            if not state.window_open(wa_id, now):
                return graph_error(131047)
            content = body.text.body
        else:
            return graph_error(131051, f"Message type {body.type!r} is not supported by this emulator")
        if not state.pair_allows(wa_id, now):
            return graph_error(131056, status=cfg.rate_limit_status)
        wamid = new_wamid()
        dumped = body.model_dump(exclude_none=True)
        message = StoredMessage(wamid, body.to, wa_id, body.type, dumped, body.biz_opaque_callback_data, now)
        state.messages[wamid] = message
        params = [
            p.text
            for c in (body.template.components if body.template else [])
            if c.type.lower() == "body"
            for p in c.parameters
        ]
        core.ledger.record(
            provider_id=wamid,
            recipient=body.to,
            recipients=[wa_id],
            sender=cfg.display_phone_number,
            notice_id=body.biz_opaque_callback_data,
            content=content,
            dropped=result.drop_after,
            details={
                "type": body.type,
                "wa_id": wa_id,
                "template": body.template.name if body.template else None,
                "language": body.template.language.code if body.template else None,
                "params": params,
                "biz_opaque_callback_data": body.biz_opaque_callback_data,
            },
        )
        deliver_statuses(message)
        answer = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": body.to, "wa_id": wa_id}],
            "messages": [{"id": wamid, "message_status": "accepted"}],
        }
        if result.drop_after:
            return DroppedResponse(
                json.dumps(answer).encode(), status_code=200, media_type="application/json"
            )
        return JSONResponse(answer)

    app.include_router(api)

    control = APIRouter(prefix="/_emulator", tags=["emulator control"])

    @control.post("/errors")
    async def inject_errors(body: InjectErrors) -> dict[str, Any]:
        status = body.status or default_status(body.code)
        if body.code in RATE_LIMIT_CODES and body.status is None:
            status = cfg.rate_limit_status
        state.injected.append(body.model_copy(update={"status": status}))
        return {"pending": [e.model_dump() for e in state.injected if e.count > 0]}

    @control.delete("/errors")
    async def clear_errors() -> dict[str, Any]:
        state.injected.clear()
        return {"pending": []}

    @control.post("/inbound")
    async def inbound(body: InboundMessage) -> dict[str, Any]:
        wa_id = wa_id_of(body.from_)
        at = time.time() - body.age_s
        state.windows[wa_id] = max(state.windows.get(wa_id, 0.0), at)
        message: dict[str, Any] = {
            "from": wa_id,
            "id": new_wamid(),
            "timestamp": str(int(at)),
            "type": "text",
            "text": {"body": body.text},
        }
        if body.context_id:
            message["context"] = {"from": cfg.display_phone_number, "id": body.context_id}
        payload = state.envelope(
            {"contacts": [{"profile": {"name": body.name}, "wa_id": wa_id}], "messages": [message]}
        )
        state.webhooks.emit(payload)
        return {
            "message_id": message["id"],
            "wa_id": wa_id,
            "window_open": state.window_open(wa_id, time.time()),
        }

    @control.put("/numbers")
    async def set_numbers(body: NumberSets) -> dict[str, Any]:
        state.not_on_whatsapp = {wa_id_of(n) for n in body.not_on_whatsapp}
        return {"not_on_whatsapp": sorted(state.not_on_whatsapp)}

    @control.put("/webhook")
    async def set_webhook(target: WebhookTarget) -> Any:
        if target.url and target.verify_token is not None:
            challenge = secrets.token_hex(8)
            params = {
                "hub.mode": "subscribe",
                "hub.verify_token": target.verify_token,
                "hub.challenge": challenge,
            }
            try:
                response = await state.webhooks.client.get(target.url, params=params)
            except httpx.HTTPError as exc:
                return JSONResponse({"verified": False, "error": repr(exc)}, status_code=400)
            if response.status_code != 200 or response.text != challenge:
                return JSONResponse(
                    {"verified": False, "status": response.status_code, "body": response.text[:200]},
                    status_code=400,
                )
        if target.app_secret is not None:
            state.webhooks.app_secret = target.app_secret
        state.webhooks.url = target.url
        return {"url": state.webhooks.url, "verified": target.verify_token is not None}

    @control.get("/events")
    async def events() -> list[dict[str, Any]]:
        return list(state.webhooks.events)

    @control.get("/messages/{wamid}")
    async def get_stored(wamid: str) -> Any:
        m = state.messages.get(wamid)
        if m is None:
            return JSONResponse({"detail": "unknown wamid"}, status_code=404)
        return {
            "id": m.wamid,
            "to": m.to,
            "wa_id": m.wa_id,
            "type": m.type,
            "body": m.body,
            "statuses": m.statuses,
        }

    app.include_router(control)
    return app
