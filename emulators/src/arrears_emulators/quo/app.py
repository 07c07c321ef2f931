"""QUO (OpenPhone) SMS API emulator: ``/v1/messages`` and ``/v1/phone-numbers`` with auth, validation, a
per-key rate limit, delivery-status and inbound-message webhooks (signed like QUO's, in either of its two
webhook systems: see `arrears_emulators.quo.webhooks`), fault injection and a send ledger.

What it does as the real API does (documentation pages in `arrears_emulators.quo.models`):

- ``GET /v1/messages`` takes the ``PN…`` id of our number as ``phoneNumberId`` and answers 400 to anything
  else (an E.164 number included); newest first, ``maxResults`` 1..100 (default 10), ``nextPageToken``.
- A message to an undeliverable number ends with status ``undelivered`` (seen on lookup); the new webhook
  system reports it as ``message.failed``; legacy webhooks say nothing (there is no ``message.undelivered``).
- The dated API generation (https://www.quo.com/docs/2026-03-30/versioning) is served at unversioned paths
  (``/messages``...) and requires ``Quo-Api-Version`` (400 without it or with an unknown version); the
  path-versioned ``/v1`` API needs no header.

``create_app(QuoConfig(...))`` for in-process use; ``python -m arrears_emulators quo --port N`` otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import hashlib
import json
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from arrears_emulators.common import (
    DroppedResponse,
    EmulatorCore,
    LimitsConfig,
    install_control,
    retry_after_header,
)
from arrears_emulators.quo.models import (
    API_VERSION_HEADER,
    E164_PATTERN,
    PN_ID_PATTERN,
    SUPPORTED_API_VERSIONS,
    ErrorDetail,
    InboundSms,
    Message,
    MessageList,
    NumberSets,
    PhoneNumber,
    QuoError,
    SendMessageBody,
    WebhookTarget,
)
from arrears_emulators.quo.webhooks import WebhookSender, WebhookSystem, iso_now

DEFAULT_SIGNING_KEY = base64.b64encode(b"arrears-quo-emulator-signing-key").decode()
_E164 = re.compile(E164_PATTERN)
_PN_ID = re.compile(PN_ID_PATTERN)


class QuoConfig(BaseModel):
    api_key: str | None = Field(
        None, description="expected Authorization value; None accepts any non-empty key"
    )
    phone_numbers: dict[str, str] = Field(
        default_factory=dict,
        description="our E.164 numbers -> phone-number ids (others get ids on first use)",
    )
    default_user_id: str = "USarrearsEmu01"
    invalid_numbers: set[str] = Field(default_factory=set, description="recipients answered with 400")
    undelivered_numbers: set[str] = Field(
        default_factory=set,
        description="recipients whose messages end 'undelivered' (message.failed in the standard system)",
    )
    webhook_url: str | None = None
    webhook_system: WebhookSystem = Field(
        "legacy", description="legacy (openphone-signature) or standard (Standard Webhooks, whsec_ secret)"
    )
    webhook_signing_key: str = DEFAULT_SIGNING_KEY
    webhook_secret: str | None = Field(None, description="whsec_ secret of the standard webhook system")
    # A receiver that is down (a restart, a deploy) gets every event once it is back within ~6 minutes
    # (0.2 s doubling to 60 s, 12 attempts); providers retry for minutes to hours, never for only seconds.
    webhook_max_attempts: int = Field(12, ge=1)
    webhook_initial_backoff_s: float = Field(0.2, ge=0)
    webhook_max_backoff_s: float = Field(60.0, ge=0)
    webhook_timeout_s: float = Field(5.0, gt=0)
    delivery_delay_ms: int = Field(20, ge=0, description="queued -> delivered/undelivered after this delay")
    failure_error_code: str = Field("30003", description="carrier error code of a message.failed event")
    limits: LimitsConfig = Field(default_factory=lambda: LimitsConfig(rate=10.0))
    seed: int | None = None


def _error(status: int, title: str, message: str, errors: list[ErrorDetail] | None = None) -> JSONResponse:
    body = QuoError(
        message=message, code=f"0100{status:03d}", status=status, title=title, errors=errors or []
    )
    return JSONResponse(body.model_dump(), status_code=status)


def _pn_id_for(number: str) -> str:
    return "PN" + hashlib.sha256(number.encode()).hexdigest()[:10]


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> int:
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    if not raw.startswith("o:"):
        raise ValueError("bad page token")
    return int(raw[2:])


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _conversation(m: Message) -> tuple[str, frozenset[str]]:
    return m.phone_number_id, frozenset(m.to) if m.direction == "outgoing" else frozenset({m.from_})


class QuoState:
    def __init__(self, config: QuoConfig) -> None:
        self.config = config
        self.numbers: dict[str, str] = dict(config.phone_numbers)  # number -> PN id
        self.messages: dict[str, Message] = {}
        self.order: list[str] = []
        # (our number's id, the other side) -> message ids, oldest first: QUO's list is indexed by
        # conversation, and a lookup must not scan every message (the dispatchers' reconciliation calls it)
        self.conversations: dict[tuple[str, frozenset[str]], list[str]] = {}
        self.invalid_numbers = set(config.invalid_numbers)
        self.undelivered_numbers = set(config.undelivered_numbers)
        self.webhooks = WebhookSender(
            url=config.webhook_url,
            signing_key=config.webhook_signing_key,
            system=config.webhook_system,
            secret=config.webhook_secret,
            max_attempts=config.webhook_max_attempts,
            initial_backoff_s=config.webhook_initial_backoff_s,
            max_backoff_s=config.webhook_max_backoff_s,
            timeout_s=config.webhook_timeout_s,
        )

    def resolve_from(self, value: str) -> tuple[str, str] | None:
        """(E.164 number, phone-number id) for a ``from`` given as either; None if unknown/invalid."""
        if value.startswith("PN"):
            for number, pn in self.numbers.items():
                if pn == value:
                    return number, pn
            return None
        if not _E164.match(value):
            return None
        pn = self.numbers.setdefault(value, _pn_id_for(value))
        return value, pn

    def store(self, message: Message) -> None:
        self.messages[message.id] = message
        self.order.append(message.id)
        self.conversations.setdefault(_conversation(message), []).append(message.id)

    async def reset(self) -> None:
        await self.webhooks.reset()
        self.messages.clear()
        self.order.clear()
        self.conversations.clear()
        self.numbers = dict(self.config.phone_numbers)
        self.invalid_numbers = set(self.config.invalid_numbers)
        self.undelivered_numbers = set(self.config.undelivered_numbers)
        self.webhooks.url = self.config.webhook_url
        self.webhooks.signing_key = self.config.webhook_signing_key
        self.webhooks.system = self.config.webhook_system
        self.webhooks.secret = self.config.webhook_secret


def create_app(config: QuoConfig | None = None) -> FastAPI:
    cfg = config or QuoConfig()
    core = EmulatorCore("quo", limits=cfg.limits, seed=cfg.seed)
    state = QuoState(cfg)
    core.on_reset(state.reset)
    core.add_stats(state.webhooks.stats)
    core.add_stats(lambda: {"messages_stored": len(state.messages)})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        core.faults.release_hanging()
        await state.webhooks.aclose()

    app = FastAPI(title="QUO (OpenPhone) API emulator", lifespan=lifespan)
    install_control(app, core)
    app.state.quo = state

    def authorize(request: Request) -> str | JSONResponse:
        if not request.url.path.startswith("/v1/"):  # the dated generation: the version header is required
            version = request.headers.get(API_VERSION_HEADER)
            if not version:
                return _error(400, "Bad Request", f"The {API_VERSION_HEADER} header is required")
            if version not in SUPPORTED_API_VERSIONS:
                return _error(400, "Bad Request", f"Unsupported {API_VERSION_HEADER}: {version}")
        key = request.headers.get("authorization", "")
        if not key or (cfg.api_key is not None and key != cfg.api_key):
            return _error(401, "Unauthorized", "Invalid or missing API key")
        return key

    async def gate(operation: str, key: str) -> JSONResponse | bool:
        """Rate limit + faults. Returns the error response to send, or whether to drop after processing."""
        result = await core.gate(operation, key=key)
        if result.retry_after_s is not None:
            response = _error(429, "Too Many Requests", "Rate limit exceeded: 10 requests per second")
            response.headers["Retry-After"] = retry_after_header(result.retry_after_s)
            return response
        if result.fail_status is not None:
            return _error(result.fail_status, "Server Error", "Something went wrong on our side")
        return result.drop_after

    def finish_delivery(message_id: str) -> None:
        async def run() -> None:
            await asyncio.sleep(cfg.delivery_delay_ms / 1000.0)
            message = state.messages.get(message_id)
            if message is None:
                return
            undelivered = any(n in state.undelivered_numbers for n in message.to)
            status = "undelivered" if undelivered else "delivered"
            updated = message.model_copy(update={"status": status, "updated_at": iso_now()})
            state.messages[message_id] = updated
            emit(updated, "message.failed" if undelivered else "message.delivered")

        state.webhooks.spawn(run())

    def emit(message: Message, event_type: str) -> dict[str, Any] | None:
        conversation = _conversation_id(message)
        if state.webhooks.system == "legacy":
            return state.webhooks.emit(event_type, message.webhook_object(conversation))
        resource = message.wire()
        if event_type == "message.failed":
            resource["status"] = "failed"
            resource["errorCode"] = cfg.failure_error_code
            resource["errorMessage"] = "Unreachable destination handset"
        context = {"phoneNumberId": message.phone_number_id, "conversationId": conversation}
        return state.webhooks.emit(event_type, resource, context)

    def _conversation_id(message: Message) -> str:
        remote = message.to[0] if message.direction == "outgoing" else message.from_
        return "CN" + hashlib.sha256(f"{message.phone_number_id}|{remote}".encode()).hexdigest()[:24]

    api = APIRouter()

    @api.get("/phone-numbers")
    async def list_phone_numbers(request: Request) -> Any:
        key = authorize(request)
        if isinstance(key, JSONResponse):
            return key
        gated = await gate("phone-numbers", key)
        if isinstance(gated, JSONResponse):
            return gated
        data = [
            PhoneNumber(id=pn, number=number, formatted_number=number).model_dump(by_alias=True)
            for number, pn in state.numbers.items()
        ]
        return JSONResponse({"data": data})

    @api.post("/messages", status_code=202)
    async def send_message(request: Request) -> Any:
        key = authorize(request)
        if isinstance(key, JSONResponse):
            return key
        gated = await gate("send", key)
        if isinstance(gated, JSONResponse):
            return gated
        drop_after = gated
        try:
            payload = json.loads(await request.body() or b"null")
            body = SendMessageBody.model_validate(payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "Bad Request", "Request body is not valid JSON")
        except ValidationError as exc:
            details = [
                ErrorDetail(
                    path="/" + "/".join(str(p) for p in err["loc"]),
                    message=err["msg"],
                    value=err.get("input")
                    if isinstance(err.get("input"), str | int | float | None)
                    else None,
                )
                for err in exc.errors()
            ]
            return _error(400, "Bad Request", "Invalid request body", details)
        resolved = state.resolve_from(body.from_)
        if resolved is None:
            detail = ErrorDetail(path="/from", message="Unknown phone number or not E.164", value=body.from_)
            return _error(400, "Bad Request", "Invalid 'from' phone number", [detail])
        from_number, pn_id = resolved
        recipient = body.to[0]
        if not _E164.match(recipient):
            detail = ErrorDetail(
                path="/to/0", message="Phone number must be in E.164 format", value=recipient
            )
            return _error(400, "Bad Request", "Invalid 'to' phone number", [detail])
        if recipient in state.invalid_numbers:
            detail = ErrorDetail(
                path="/to/0", message="The phone number is not a valid mobile number", value=recipient
            )
            return _error(400, "Bad Request", "Invalid recipient phone number", [detail])
        now = iso_now()
        message = Message(
            id="AC" + secrets.token_hex(16),
            to=[recipient],
            from_=from_number,
            text=body.content,
            phone_number_id=pn_id,
            direction="outgoing",
            user_id=body.user_id or cfg.default_user_id,
            status="queued",
            created_at=now,
            updated_at=now,
        )
        state.store(message)
        core.ledger.record(
            provider_id=message.id,
            recipient=recipient,
            sender=from_number,
            content=body.content,
            dropped=drop_after,
            details={"phoneNumberId": pn_id, "userId": message.user_id},
        )
        finish_delivery(message.id)
        envelope = {"data": message.wire()}
        if drop_after:
            return DroppedResponse(
                json.dumps(envelope).encode(), status_code=202, media_type="application/json"
            )
        return JSONResponse(envelope, status_code=202)

    @api.get("/messages")
    async def list_messages(
        request: Request,
        phone_number_id: str | None = Query(None, alias="phoneNumberId"),
        participants: list[str] | None = Query(None),
        participants_brackets: list[str] | None = Query(None, alias="participants[]"),
        created_after: str | None = Query(None, alias="createdAfter"),
        created_before: str | None = Query(None, alias="createdBefore"),
        max_results: int = Query(10, alias="maxResults"),
        page_token: str | None = Query(None, alias="pageToken"),
    ) -> Any:
        key = authorize(request)
        if isinstance(key, JSONResponse):
            return key
        gated = await gate("list", key)
        if isinstance(gated, JSONResponse):
            return gated
        wanted = set((participants or []) + (participants_brackets or []))
        errors: list[ErrorDetail] = []
        if not phone_number_id:
            errors.append(ErrorDetail(path="/phoneNumberId", message="Required"))
        elif not _PN_ID.match(phone_number_id):
            errors.append(
                ErrorDetail(
                    path="/phoneNumberId", message="Expected a phone number id (PN...)", value=phone_number_id
                )
            )
        if not wanted:
            errors.append(ErrorDetail(path="/participants", message="Required"))
        if not 1 <= max_results <= 100:
            errors.append(ErrorDetail(path="/maxResults", message="Expected 1..100", value=max_results))
        try:
            after = _parse_time(created_after) if created_after else None
            before = _parse_time(created_before) if created_before else None
            offset = _decode_token(page_token) if page_token else 0
        except ValueError:
            errors.append(ErrorDetail(path="/createdAfter|createdBefore|pageToken", message="Invalid value"))
            after = before = None
            offset = 0
        if errors:
            return _error(400, "Bad Request", "Invalid query parameters", errors)
        assert phone_number_id is not None
        matches: list[Message] = []
        for message_id in reversed(state.conversations.get((phone_number_id, frozenset(wanted)), [])):
            m = state.messages[message_id]  # newest first
            created = _parse_time(m.created_at)
            if (after and created < after) or (before and created > before):
                continue
            matches.append(m)
        page = matches[offset : offset + max_results]
        next_token = _encode_token(offset + max_results) if offset + max_results < len(matches) else None
        body = MessageList(
            data=[m.wire() for m in page], total_items=len(matches), next_page_token=next_token
        )
        return JSONResponse(body.model_dump(by_alias=True))

    @api.get("/messages/{message_id}")
    async def get_message(request: Request, message_id: str) -> Any:
        key = authorize(request)
        if isinstance(key, JSONResponse):
            return key
        gated = await gate("get", key)
        if isinstance(gated, JSONResponse):
            return gated
        message = state.messages.get(message_id)
        if message is None:
            return _error(404, "Not Found", f"Message {message_id} not found")
        return JSONResponse({"data": message.wire()})

    app.include_router(api, prefix="/v1")
    app.include_router(api)  # the dated generation (Quo-Api-Version header)

    control = APIRouter(prefix="/_emulator", tags=["emulator control"])

    @control.post("/inbound")
    async def inbound(body: InboundSms) -> Any:
        resolved = state.resolve_from(body.to)
        if resolved is None:
            return _error(400, "Bad Request", "Unknown 'to' number")
        number, pn_id = resolved
        now = iso_now()
        message = Message(
            id="AC" + secrets.token_hex(16),
            to=[number],
            from_=body.from_,
            text=body.content,
            phone_number_id=pn_id,
            direction="incoming",
            user_id=None,
            status="received",
            created_at=now,
            updated_at=now,
        )
        state.store(message)
        event = emit(message, "message.received")
        return {"message": message.wire(), "event_id": event["id"] if event else None}

    @control.put("/webhook")
    async def set_webhook(target: WebhookTarget) -> Any:
        if target.signing_key is not None:
            try:
                base64.b64decode(target.signing_key, validate=True)
            except (binascii.Error, ValueError):
                return _error(400, "Bad Request", "signing_key must be base64")
            state.webhooks.signing_key = target.signing_key
        if target.system is not None:
            state.webhooks.system = target.system
        if target.secret is not None:
            state.webhooks.secret = target.secret
        state.webhooks.url = target.url
        return {"url": state.webhooks.url, "system": state.webhooks.system}

    @control.put("/numbers")
    async def set_numbers(body: NumberSets) -> dict[str, Any]:
        if body.invalid is not None:
            state.invalid_numbers = set(body.invalid)
        if body.undelivered is not None:
            state.undelivered_numbers = set(body.undelivered)
        return {"invalid": sorted(state.invalid_numbers), "undelivered": sorted(state.undelivered_numbers)}

    @control.get("/events")
    async def events() -> list[dict[str, Any]]:
        return list(state.webhooks.events)

    app.include_router(control)
    return app


def build_config(argv: list[str]) -> QuoConfig:
    """Command-line options of ``python -m arrears_emulators quo``."""
    parser = argparse.ArgumentParser(prog="arrears_emulators quo")
    parser.add_argument("--config", type=Path, help="JSON file with QuoConfig fields (flags override it)")
    parser.add_argument("--api-key", help="expected Authorization header value (default: any)")
    parser.add_argument("--webhook-url")
    parser.add_argument("--webhook-signing-key", help="base64 signing key (legacy webhooks)")
    parser.add_argument("--webhook-system", choices=["legacy", "standard"])
    parser.add_argument("--webhook-secret", help="whsec_ secret (standard webhooks)")
    parser.add_argument("--phone-number", action="append", default=[], metavar="E164=PNID")
    parser.add_argument("--invalid-number", action="append", default=[], metavar="E164")
    parser.add_argument("--undelivered-number", action="append", default=[], metavar="E164")
    parser.add_argument("--rate-limit", type=float, help="requests per second per API key (default 10)")
    parser.add_argument("--rate-algorithm", choices=["token_bucket", "sliding_window"])
    parser.add_argument("--no-rate-limit", action="store_true")
    parser.add_argument("--delivery-delay-ms", type=int)
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    data: dict[str, Any] = json.loads(args.config.read_text()) if args.config else {}
    for flag, field in (
        ("api_key", "api_key"),
        ("webhook_url", "webhook_url"),
        ("webhook_signing_key", "webhook_signing_key"),
        ("webhook_system", "webhook_system"),
        ("webhook_secret", "webhook_secret"),
        ("delivery_delay_ms", "delivery_delay_ms"),
        ("seed", "seed"),
    ):
        if getattr(args, flag) is not None:
            data[field] = getattr(args, flag)
    if args.phone_number:
        data["phone_numbers"] = dict(item.split("=", 1) for item in args.phone_number)
    if args.invalid_number:
        data["invalid_numbers"] = args.invalid_number
    if args.undelivered_number:
        data["undelivered_numbers"] = args.undelivered_number
    limits = dict(data.get("limits") or {"rate": 10.0})
    if args.rate_limit is not None:
        limits["rate"] = args.rate_limit
    if args.rate_algorithm:
        limits["algorithm"] = args.rate_algorithm
    if args.no_rate_limit:
        limits["enabled"] = False
    data["limits"] = limits
    return QuoConfig.model_validate(data)
