"""WhatsApp Cloud API webhooks: signature check, the subscription handshake, typed parsing, and a FastAPI
router for whichever service receives them (the responses service mounts it; nothing here depends on it).

- `verify_signature`: Meta signs each notification with ``X-Hub-Signature-256: sha256=<hex>``, the
  HMAC-SHA256 of the raw request body keyed with the app secret
  (https://developers.facebook.com/docs/graph-api/webhooks/getting-started#validate-payloads). Compared in
  constant time; a missing or malformed header is a bad signature.
- `verify_subscription`: when the callback URL is registered, Meta sends ``GET ?hub.mode=subscribe&
  hub.verify_token=<ours>&hub.challenge=<n>`` and expects the challenge back.
- `parse`: ``{"object": "whatsapp_business_account", "entry": [{"id", "changes": [{"field": "messages",
  "value": {"metadata", "contacts"?, "messages"? | "statuses"?}}]}]}`` -> `InboundMessage` (a customer wrote)
  and `StatusUpdate` (``sent`` / ``delivered`` / ``read`` / ``failed`` of a message we sent; its
  ``biz_opaque_callback_data`` is the notice id the dispatcher sent it with).
- `make_router(on_inbound, on_status, app_secret, verify_token)`: ``GET`` / ``POST /webhooks/whatsapp``;
  403 on a bad signature or verify token; the callbacks are awaited one by one and an exception answers 500,
  so Meta delivers the notification again (callbacks must be idempotent: the wamid is the natural key).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

SIGNATURE_HEADER = "X-Hub-Signature-256"
PATH = "/webhooks/whatsapp"
# Failed statuses whose error means the address cannot receive WhatsApp (not a passing problem).
UNREACHABLE_CODES = frozenset({131026, 131021, 131030})

Secret = str | bytes | SecretStr


def _secret_bytes(value: Secret | None) -> bytes:
    if value is None:
        return b""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return value.encode() if isinstance(value, str) else value


def signature(app_secret: Secret, raw_body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends with `raw_body`."""
    return "sha256=" + hmac.new(_secret_bytes(app_secret), raw_body, hashlib.sha256).hexdigest()


def verify_signature(app_secret: Secret, raw_body: bytes, header: str | None) -> bool:
    """True when `header` is ``sha256=<hex HMAC-SHA256 of raw_body keyed with app_secret>``. An empty app
    secret verifies nothing (an unconfigured receiver must not accept unsigned data)."""
    key = _secret_bytes(app_secret)
    if not key or not header:
        return False
    if len(header) > 200 or not header.isascii():  # sha256= and 64 hex digits; non-ASCII cannot match
        return False
    scheme, _, given = header.strip().partition("=")
    if scheme.lower() != "sha256" or not given:
        return False
    expected = hmac.new(key, raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), given.strip().lower().encode())


def verify_subscription(
    mode: str | None, token: str | None, challenge: str | None, verify_token: Secret | None
) -> str | None:
    """The GET handshake: the challenge to answer, or None (refuse with 403)."""
    expected = _secret_bytes(verify_token)
    if mode != "subscribe" or not expected or token is None or challenge is None:
        return None
    if not hmac.compare_digest(expected, token.encode()):
        return None
    return challenge


# -- what a notification carries --------------------------------------------------------------------------
class WebhookError(BaseModel):
    """An error of a failed status (or of an unsupported inbound message)."""

    model_config = ConfigDict(frozen=True)

    code: int
    title: str | None = None
    message: str | None = None
    details: str | None = None


class StatusUpdate(BaseModel):
    """What happened to a message we sent."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["status"] = "status"
    wamid: str
    status: str = Field(description="sent | delivered | read | failed (| deleted | warning)")
    recipient_id: str = Field(description="the customer's WhatsApp id (digits)")
    timestamp: datetime
    biz_opaque_callback_data: str | None = Field(None, description="what we sent it with: the notice id")
    errors: tuple[WebhookError, ...] = ()
    phone_number_id: str | None = None
    display_phone_number: str | None = None
    conversation_id: str | None = None
    pricing_category: str | None = None

    @property
    def notice_id(self) -> str | None:
        return self.biz_opaque_callback_data

    @property
    def error_codes(self) -> tuple[int, ...]:
        return tuple(e.code for e in self.errors)

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def unreachable(self) -> bool:
        """Failed because the number cannot receive WhatsApp (not on WhatsApp, ...): a permanent verdict
        on the address, as a hard bounce is for email."""
        return self.failed and any(c in UNREACHABLE_CODES for c in self.error_codes)

    @property
    def reason(self) -> str | None:
        if not self.errors:
            return None
        return "; ".join(
            f"{e.code} {e.title or e.message or ''}: {e.details or ''}".strip(" :") for e in self.errors
        )


class InboundMessage(BaseModel):
    """A message a customer sent to our number (it opens the 24-hour customer-service window)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["inbound"] = "inbound"
    wamid: str
    wa_id: str = Field(description="the sender's WhatsApp id (digits, usually the number without +)")
    timestamp: datetime
    type: str
    text: str | None = Field(None, description="the text, a button's label or a media caption")
    profile_name: str | None = None
    context_id: str | None = Field(None, description="wamid of our message the customer replied to")
    errors: tuple[WebhookError, ...] = ()
    phone_number_id: str | None = None
    display_phone_number: str | None = None

    @property
    def from_e164(self) -> str:
        return "+" + self.wa_id


WebhookItem = InboundMessage | StatusUpdate


class WebhookPayloadError(ValueError):
    """Not a WhatsApp Business Account notification we can read."""


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _WireError(_Wire):
    code: int
    title: str | None = None
    message: str | None = None
    error_data: dict[str, Any] | None = None

    def typed(self) -> WebhookError:
        details = (self.error_data or {}).get("details")
        return WebhookError(code=self.code, title=self.title, message=self.message, details=details)


class _WireStatus(_Wire):
    id: str
    status: str
    timestamp: int
    recipient_id: str
    biz_opaque_callback_data: str | None = None
    errors: list[_WireError] = Field(default_factory=list)
    conversation: dict[str, Any] | None = None
    pricing: dict[str, Any] | None = None


class _WireMessage(_Wire):
    from_: str = Field(alias="from")
    id: str
    timestamp: int
    type: str
    text: dict[str, Any] | None = None
    button: dict[str, Any] | None = None
    interactive: dict[str, Any] | None = None
    image: dict[str, Any] | None = None
    video: dict[str, Any] | None = None
    document: dict[str, Any] | None = None
    reaction: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    errors: list[_WireError] = Field(default_factory=list)

    def body(self) -> str | None:
        if self.text is not None:
            return self.text.get("body")
        if self.button is not None:
            return self.button.get("text")
        if self.interactive is not None:
            reply = self.interactive.get("button_reply") or self.interactive.get("list_reply") or {}
            return reply.get("title")
        for media in (self.image, self.video, self.document):
            if media is not None:
                return media.get("caption")
        if self.reaction is not None:
            return self.reaction.get("emoji")
        return None


class _WireValue(_Wire):
    messaging_product: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    contacts: list[dict[str, Any]] = Field(default_factory=list)
    messages: list[_WireMessage] = Field(default_factory=list)
    statuses: list[_WireStatus] = Field(default_factory=list)


class _WireChange(_Wire):
    field: str
    value: dict[str, Any] = Field(default_factory=dict)


class _WireEntry(_Wire):
    id: str | None = None
    changes: list[_WireChange] = Field(default_factory=list)


class _WirePayload(_Wire):
    object: str
    entry: list[_WireEntry] = Field(default_factory=list)


def _when(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def parse(payload: Mapping[str, Any] | bytes | str) -> list[WebhookItem]:
    """Every inbound message and status update of a notification, in order. Changes of other fields
    (template quality, account updates ...) are skipped. `WebhookPayloadError` when it is not a WhatsApp
    Business Account notification."""
    try:
        data = json.loads(payload) if isinstance(payload, bytes | str) else payload
        wire = _WirePayload.model_validate(data)
    except (ValueError, ValidationError) as e:
        raise WebhookPayloadError(f"not a WhatsApp webhook payload: {e}"[:300]) from e
    if wire.object != "whatsapp_business_account":
        raise WebhookPayloadError(f"unexpected webhook object {wire.object!r}")
    out: list[WebhookItem] = []
    for entry in wire.entry:
        for change in entry.changes:
            if change.field != "messages":
                continue
            try:
                value = _WireValue.model_validate(change.value)
            except ValidationError as e:
                raise WebhookPayloadError(f"unreadable messages change: {e}"[:300]) from e
            pn_id = value.metadata.get("phone_number_id")
            display = value.metadata.get("display_phone_number")
            names = {
                str(c.get("wa_id")): (c.get("profile") or {}).get("name")
                for c in value.contacts
                if c.get("wa_id")
            }
            for m in value.messages:
                out.append(
                    InboundMessage(
                        wamid=m.id,
                        wa_id=m.from_,
                        timestamp=_when(m.timestamp),
                        type=m.type,
                        text=m.body(),
                        profile_name=names.get(m.from_),
                        context_id=(m.context or {}).get("id"),
                        errors=tuple(e.typed() for e in m.errors),
                        phone_number_id=pn_id,
                        display_phone_number=display,
                    )
                )
            for s in value.statuses:
                out.append(
                    StatusUpdate(
                        wamid=s.id,
                        status=s.status,
                        recipient_id=s.recipient_id,
                        timestamp=_when(s.timestamp),
                        biz_opaque_callback_data=s.biz_opaque_callback_data,
                        errors=tuple(e.typed() for e in s.errors),
                        phone_number_id=pn_id,
                        display_phone_number=display,
                        conversation_id=(s.conversation or {}).get("id"),
                        pricing_category=(s.pricing or {}).get("category"),
                    )
                )
    return out


# -- the receiving endpoint --------------------------------------------------------------------------------
OnInbound = Callable[[InboundMessage], Awaitable[None]]
OnStatus = Callable[[StatusUpdate], Awaitable[None]]


def make_router(
    on_inbound: OnInbound,
    on_status: OnStatus,
    app_secret: Secret,
    verify_token: Secret | None,
    *,
    path: str = PATH,
) -> APIRouter:
    """``GET path`` answers Meta's subscription handshake; ``POST path`` verifies the signature of the raw
    body (403 when it does not match), parses it (400 when unreadable) and awaits `on_inbound` /
    `on_status` for each item in order. 200 ``{"received": n}`` once all callbacks returned."""
    router = APIRouter(tags=["whatsapp webhooks"])

    @router.get(path, response_class=PlainTextResponse)
    async def subscribe(
        mode: str | None = Query(None, alias="hub.mode"),
        token: str | None = Query(None, alias="hub.verify_token"),
        challenge: str | None = Query(None, alias="hub.challenge"),
    ) -> Response:
        answer = verify_subscription(mode, token, challenge, verify_token)
        if answer is None:
            return JSONResponse({"detail": "verification failed"}, status_code=403)
        return PlainTextResponse(answer)

    @router.post(path)
    async def notify(request: Request) -> Response:
        raw = await request.body()
        if not verify_signature(app_secret, raw, request.headers.get(SIGNATURE_HEADER)):
            return JSONResponse({"detail": "invalid signature"}, status_code=403)
        try:
            items = parse(raw)
        except WebhookPayloadError as e:
            return JSONResponse({"detail": str(e)}, status_code=400)
        for item in items:
            if isinstance(item, InboundMessage):
                await on_inbound(item)
            else:
                await on_status(item)
        return JSONResponse({"received": len(items)})

    return router
