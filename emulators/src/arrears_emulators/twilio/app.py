"""Twilio Messaging API emulator: ``/2010-04-01/Accounts/{AccountSid}/Messages.json`` (create, list) and
``/Messages/{Sid}.json`` (fetch), with HTTP basic auth (Account SID : Auth Token), form-encoded bodies,
Twilio's error bodies and codes, a per-account rate limit (429, code 20429), fault injection (5xx, timeouts,
accepted-then-dropped responses), status callbacks signed with ``X-Twilio-Signature`` and a send ledger.

What it does as the real API does (https://www.twilio.com/docs/messaging/api/message-resource):

- create answers ``201`` with the Message resource (``sid`` ``SM…``, ``status`` ``queued``, RFC 2822 dates,
  ``direction`` ``outbound-api``); ``To`` and ``Body`` are required, and one of ``From`` /
  ``MessagingServiceSid``; a ``To`` that is not E.164 -> 400 code 21211; a ``From`` that is not ours -> 400
  code 21606; an empty body -> 400 code 21602; more than 1,600 characters -> 400 code 21617.
- wrong credentials -> 401 code 20003; an Account SID in the path other than the authenticated one -> 404
  code 20404.
- list filters by ``To``, ``From`` and ``DateSent`` (``DateSent``, ``DateSent<``, ``DateSent>`` with
  YYYY-MM-DD), newest first, paged by ``PageSize`` (default 50, max 1,000) with ``next_page_uri``.
- the message then moves ``queued`` -> ``sent`` -> ``delivered`` (``undelivered`` with error 30003 for
  numbers configured so), and each status is posted to the message's ``StatusCallback``.

``create_app(TwilioConfig(...))`` for in-process use; ``python -m arrears_emulators twilio --port N`` otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from arrears_emulators.common import (
    DroppedResponse,
    EmulatorCore,
    LimitsConfig,
    install_control,
    retry_after_header,
)
from arrears_emulators.twilio.signing import signature

API_VERSION = "2010-04-01"
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
MAX_BODY = 1600
DEFAULT_SID = "ACarrears00000000000000000000000"
DEFAULT_TOKEN = "arrears-twilio-emulator-token"


class TwilioConfig(BaseModel):
    account_sid: str = DEFAULT_SID
    auth_token: str = DEFAULT_TOKEN
    from_numbers: set[str] = Field(
        default_factory=set, description="our Twilio numbers (empty: any E.164 From is accepted)"
    )
    messaging_service_sids: set[str] = Field(default_factory=set)
    undelivered_numbers: set[str] = Field(default_factory=set, description="recipients ending 'undelivered'")
    delivery_delay_ms: int = Field(20, ge=0, description="queued -> sent -> delivered after this delay each")
    callback_timeout_s: float = Field(5.0, gt=0)
    limits: LimitsConfig = Field(default_factory=lambda: LimitsConfig(rate=10.0))
    seed: int | None = None


Config = TwilioConfig


def rfc2822(t: datetime) -> str:
    return email.utils.format_datetime(t.astimezone(UTC), usegmt=False).replace("-0000", "+0000")


def error(status: int, code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


class Stored:
    def __init__(self, resource: dict[str, Any], created: datetime, callback: str | None) -> None:
        self.resource = resource
        self.created = created
        self.callback = callback


def segments(body: str) -> int:
    gsm = all(ord(c) < 128 for c in body)
    single, multi = (160, 153) if gsm else (70, 67)
    return 1 if len(body) <= single else -(-len(body) // multi)


def create_app(config: TwilioConfig | None = None) -> FastAPI:
    cfg = config or TwilioConfig()
    core = EmulatorCore("twilio", limits=cfg.limits, seed=cfg.seed)
    messages: dict[str, Stored] = {}
    order: list[str] = []
    callbacks: list[dict[str, Any]] = []
    tasks: set[asyncio.Task[None]] = set()
    client = httpx.AsyncClient(timeout=cfg.callback_timeout_s)

    def reset() -> None:
        messages.clear()
        order.clear()
        callbacks.clear()

    core.on_reset(reset)
    core.add_stats(lambda: {"messages_stored": len(messages), "callbacks_sent": len(callbacks)})

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        core.faults.release_hanging()
        for t in list(tasks):
            t.cancel()
        await client.aclose()

    app = FastAPI(title="Twilio Messaging API emulator", lifespan=lifespan)
    install_control(app, core)
    base = f"/{API_VERSION}/Accounts/{{account_sid}}"

    def authorize(request: Request, account_sid: str) -> JSONResponse | None:
        auth = request.headers.get("authorization", "")
        try:
            scheme, _, raw = auth.partition(" ")
            user, _, password = base64.b64decode(raw).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            scheme, user, password = "", "", ""
        if scheme.lower() != "basic" or user != cfg.account_sid or password != cfg.auth_token:
            return error(401, 20003, "Authenticate")
        if account_sid != cfg.account_sid:
            return error(
                404, 20404, f"The requested resource /{API_VERSION}/Accounts/{account_sid} was not found"
            )
        return None

    async def gate(operation: str) -> JSONResponse | bool:
        result = await core.gate(operation, key=cfg.account_sid)
        if result.retry_after_s is not None:
            response = error(429, 20429, "Too Many Requests")
            response.headers["Retry-After"] = retry_after_header(result.retry_after_s)
            return response
        if result.fail_status is not None:
            return error(result.fail_status, 20500, "Internal Server Error")
        return result.drop_after

    async def post_callback(stored: Stored) -> None:
        if not stored.callback:
            return
        r = stored.resource
        params = {
            "AccountSid": r["account_sid"],
            "ApiVersion": API_VERSION,
            "From": r["from"],
            "MessageSid": r["sid"],
            "MessageStatus": r["status"],
            "SmsSid": r["sid"],
            "SmsStatus": r["status"],
            "To": r["to"],
        }
        if r.get("error_code"):
            params["ErrorCode"] = str(r["error_code"])
        headers = {"X-Twilio-Signature": signature(cfg.auth_token, stored.callback, params)}
        outcome: Any
        try:
            outcome = (await client.post(stored.callback, data=params, headers=headers)).status_code
        except httpx.HTTPError as e:
            outcome = type(e).__name__
        callbacks.append({"url": stored.callback, "params": params, "outcome": outcome})

    def progress(sid: str) -> None:
        async def run() -> None:
            for status in ("sent", "delivered"):
                await asyncio.sleep(cfg.delivery_delay_ms / 1000.0)
                stored = messages.get(sid)
                if stored is None:
                    return
                r = stored.resource
                now = datetime.now(UTC)
                if status == "delivered" and r["to"] in cfg.undelivered_numbers:
                    r.update(
                        status="undelivered",
                        error_code=30003,
                        error_message="Unreachable destination handset",
                    )
                else:
                    r["status"] = status
                if status == "sent":
                    r["date_sent"] = rfc2822(now)
                r["date_updated"] = rfc2822(now)
                await post_callback(stored)

        task = asyncio.get_running_loop().create_task(run())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    api = APIRouter()

    @api.post(base + "/Messages.json")
    async def create_message(account_sid: str, request: Request) -> Any:
        refused = authorize(request, account_sid)
        if refused is not None:
            return refused
        gated = await gate("send")
        if isinstance(gated, JSONResponse):
            return gated
        form = dict(parse_qsl((await request.body()).decode(errors="replace"), keep_blank_values=True))
        to, from_, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        service = form.get("MessagingServiceSid", "")
        if not to:
            return error(400, 21604, "A 'To' phone number is required.")
        if not E164.match(to):
            return error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not from_ and not service:
            return error(400, 21603, "A 'From' phone number is required.")
        if from_ and (not E164.match(from_) or (cfg.from_numbers and from_ not in cfg.from_numbers)):
            return error(
                400,
                21606,
                f"The From phone number {from_} is not a valid, SMS-capable inbound phone number or short code for your account.",
            )
        if service and service not in cfg.messaging_service_sids:
            return error(400, 21701, f"The Messaging Service Sid {service} is invalid.")
        if not body:
            return error(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY:
            return error(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        now = datetime.now(UTC)
        sid = "SM" + secrets.token_hex(16)
        resource: dict[str, Any] = {
            "sid": sid,
            "account_sid": cfg.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": rfc2822(now),
            "date_sent": None,
            "date_updated": rfc2822(now),
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_ or None,
            "messaging_service_sid": service or None,
            "num_media": "0",
            "num_segments": str(segments(body)),
            "price": None,
            "price_unit": "USD",
            "status": "queued",
            "to": to,
            "uri": f"/{API_VERSION}/Accounts/{cfg.account_sid}/Messages/{sid}.json",
        }
        stored = Stored(resource, now, form.get("StatusCallback") or None)
        messages[sid] = stored
        order.append(sid)
        core.ledger.record(
            provider_id=sid,
            recipient=to,
            sender=from_ or service,
            content=body,
            dropped=gated,
            details={"status_callback": stored.callback},
        )
        progress(sid)
        if gated:
            return DroppedResponse(
                json.dumps(resource).encode(), status_code=201, media_type="application/json"
            )
        return JSONResponse(resource, status_code=201)

    @api.get(base + "/Messages.json")
    async def list_messages(account_sid: str, request: Request) -> Any:
        refused = authorize(request, account_sid)
        if refused is not None:
            return refused
        gated = await gate("list")
        if isinstance(gated, JSONResponse):
            return gated
        q = request.query_params
        try:
            size = min(1000, max(1, int(q.get("PageSize", "50"))))
            page = max(0, int(q.get("Page", "0")))
            on = {
                op: date.fromisoformat(q[k])
                for op, k in (("=", "DateSent"), ("<", "DateSent<"), (">", "DateSent>"))
                if k in q
            }
        except ValueError:
            return error(400, 20001, "Invalid query parameter")
        found = []
        for sid in reversed(order):
            r = messages[sid].resource
            if q.get("To") and r["to"] != q["To"]:
                continue
            if q.get("From") and r["from"] != q["From"]:
                continue
            if on:
                sent = r["date_sent"]
                if sent is None:
                    continue
                d = email.utils.parsedate_to_datetime(sent).date()
                if ("=" in on and d != on["="]) or ("<" in on and d > on["<"]) or (">" in on and d < on[">"]):
                    continue
            found.append(r)
        chunk = found[page * size : (page + 1) * size]
        path = f"/{API_VERSION}/Accounts/{cfg.account_sid}/Messages.json"
        keep = urlencode([(k, v) for k, v in q.multi_items() if k not in ("Page", "PageSize", "PageToken")])
        prefix = f"{path}?{keep + '&' if keep else ''}PageSize={size}"
        more = (page + 1) * size < len(found)
        return JSONResponse(
            {
                "messages": chunk,
                "page": page,
                "page_size": size,
                "start": page * size,
                "end": page * size + max(0, len(chunk) - 1),
                "uri": f"{prefix}&Page={page}",
                "first_page_uri": f"{prefix}&Page=0",
                "previous_page_uri": f"{prefix}&Page={page - 1}" if page > 0 else None,
                "next_page_uri": f"{prefix}&Page={page + 1}&PageToken=PA{page + 1}" if more else None,
            }
        )

    @api.get(base + "/Messages/{sid}.json")
    async def fetch_message(account_sid: str, sid: str, request: Request) -> Any:
        refused = authorize(request, account_sid)
        if refused is not None:
            return refused
        gated = await gate("get")
        if isinstance(gated, JSONResponse):
            return gated
        stored = messages.get(sid)
        if stored is None:
            return error(404, 20404, f"The requested resource {request.url.path} was not found")
        return JSONResponse(stored.resource)

    control = APIRouter(prefix="/_emulator", tags=["emulator control"])

    @control.get("/callbacks")
    async def sent_callbacks() -> list[dict[str, Any]]:
        return list(callbacks)

    app.include_router(api)
    app.include_router(control)
    return app
