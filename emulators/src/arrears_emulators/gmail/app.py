"""Gmail API v1 emulator serving the paths google-api-python-client calls when built with
``client_options={"api_endpoint": "http://127.0.0.1:PORT"}`` (``/gmail/v1/users/{userId}/...``).

Models per-user quota units (250/s; send = 100), the daily sending limit as Gmail enforces it (a rolling 24
hours; past it ``429 "User-rate limit exceeded.  Retry after <time> (Mail sending)"`` with the time only in
the message, no ``Retry-After`` header, and only after ``sending_limit_lag`` more sends were still accepted
with 200 — https://developers.google.com/workspace/gmail/api/guides/handle-errors#mail-sending_limits),
``users.watch`` expiring after 7 days (https://developers.google.com/workspace/gmail/api/guides/push),
Google-style error bodies,
history with a retention window (404 for too-old start ids), bounces (DSNs from mailer-daemon) and
customer replies injected through ``POST /_emulator/inbound``. Every mailbox (``users/{userId}``) has its own
history, sending window and quota units; ``mailbox_daily_limits`` and ``PUT /_emulator/mailboxes/{user}/limits``
give one mailbox its own sending limit, ``POST /_emulator/mailboxes/{user}/faults`` makes one mailbox answer
Google errors (429 ``rateLimitExceeded``, 403 ``dailyLimitExceeded``, "(Mail sending)", 401) while the others
work, and ``GET /_emulator/mailboxes`` counts each mailbox's sends. While a watch is active every change is
pushed to ``push_url`` as Pub/Sub does, with an OIDC ID token in ``Authorization: Bearer`` signed by a key
made at start, whose certificate ``GET /oauth2/v1/certs`` serves (see `.push_token`).
"""

from __future__ import annotations

import argparse
import asyncio
import binascii
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from arrears_emulators.common import (
    DroppedResponse,
    EmulatorCore,
    LimitsConfig,
    install_control,
    retry_after_header,
)
from arrears_emulators.gmail.mailbox import (
    Format,
    Mailbox,
    StoredMessage,
    addresses,
    b64url,
    b64url_decode,
    parse_head,
)
from arrears_emulators.gmail.push_token import CERTS_PATH, PushSigner

log = logging.getLogger(__name__)

# Gmail API quota units per method (https://developers.google.com/gmail/api/reference/quota).
COSTS: dict[str, int] = {
    "users.getProfile": 1,
    "users.watch": 100,
    "users.stop": 50,
    "users.messages.send": 100,
    "users.messages.list": 5,
    "users.messages.get": 5,
    "users.history.list": 2,
}

_STATUS_TEXT = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

MAILER_DAEMON = "mailer-daemon@googlemail.com"


class GmailConfig(BaseModel):
    user_email: str = "collections@arrears.test"
    limits: LimitsConfig = Field(
        default_factory=lambda: LimitsConfig(rate=250.0, daily_limit=2000),
        description="quota units per second per user; daily_limit = sends per user per rolling 24 hours",
    )
    bouncing_addresses: set[str] = Field(default_factory=set)
    bounce_domains: set[str] = Field(default_factory=lambda: {"bounce.invalid"})
    history_retention_s: float = Field(7 * 24 * 3600, gt=0)
    initial_history_id: int = Field(1000, ge=1)
    watch_expiration_s: int = Field(7 * 24 * 3600, gt=0)
    sending_limit_lag: int = Field(
        0, ge=0, description="sends still accepted (200) past the daily limit before the 429s start"
    )
    sending_window_s: float = Field(86400.0, gt=0, description="the rolling window of the sending limit")
    push_url: str | None = Field(
        None, description="Pub/Sub-style push endpoint notified while a watch is active"
    )
    push_audience: str | None = Field(
        None, description="`aud` of the push's OIDC token (Authorization: Bearer); unset = push_url"
    )
    push_service_account: str = Field(
        "gmail-push@arrears-emulator.iam.gserviceaccount.com",
        description="`email` of the push's OIDC token (the push subscription's service account)",
    )
    mailbox_daily_limits: dict[str, int] = Field(
        default_factory=dict,
        description="per-mailbox sending limit (address -> sends per rolling 24 hours), overriding"
        " limits.daily_limit: Gmail's limit is per user (Workspace ~2000, consumer ~500)",
    )
    seed: int | None = None


class MailboxFault(BaseModel):
    """Body of ``POST /_emulator/mailboxes/{user}/faults``: the next `next` matching requests of that one
    mailbox get a Google error (e.g. 429 ``rateLimitExceeded``, 403 ``dailyLimitExceeded``, 429 "User-rate
    limit exceeded ... (Mail sending)", 401); the other mailboxes are untouched."""

    status: int = Field(429, ge=400, le=599)
    reason: str = "rateLimitExceeded"
    message: str = "User-rate limit exceeded"
    retry_after_s: float | None = Field(
        None, ge=0, description="named in the message as Gmail does ('Retry after <RFC 3339 time>')"
    )
    mail_sending: bool = Field(
        False, description="end the message with ' (Mail sending)' (the sending limit)"
    )
    next: int = Field(1, ge=1)
    operations: list[str] | None = Field(
        default_factory=lambda: ["users.messages.send"], description="None = every operation"
    )


class MailboxLimits(BaseModel):
    """Body of ``PUT /_emulator/mailboxes/{user}/limits``; ``daily_limit: null`` = the emulator-wide limit."""

    daily_limit: int | None = Field(None, ge=0)


class SendBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")

    raw: str | None = None
    thread_id: str | None = Field(None, alias="threadId")


class WatchBody(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")

    topic_name: str | None = Field(None, alias="topicName")
    label_ids: list[str] | None = Field(None, alias="labelIds")


class InboundEmail(BaseModel):
    """Body of ``POST /_emulator/inbound``: a customer's email arriving in our mailbox."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from")
    to: str | None = Field(None, description="our address (default: the configured user)")
    mailbox: str | None = Field(
        None,
        description="the mailbox it lands in (default: the one `to` names if it exists, else the user's)",
    )
    subject: str = ""
    body: str = ""
    in_reply_to: str | None = None
    references: str | None = None
    message_id: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)


class ExpireHistory(BaseModel):
    """Body of ``POST /_emulator/history/expire``: drop history up to an id (default: all of it)."""

    user: str | None = None
    up_to_history_id: int | None = None


class BouncingAddresses(BaseModel):
    addresses: list[str] = Field(default_factory=list)
    domains: list[str] | None = None


def google_error(
    code: int,
    message: str,
    reason: str,
    *,
    domain: str = "global",
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}],
            "status": _STATUS_TEXT.get(code, "UNKNOWN"),
        }
    }
    return JSONResponse(body, status_code=code, headers=headers)


def _rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def build_dsn(original: StoredMessage, failed: str) -> bytes:
    """An RFC 3464 delivery status notification like Gmail's for a hard bounce."""
    boundary = "000000000000dsn" + original.id
    date = formatdate(usegmt=True)
    original_headers = original.raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("utf-8", "replace")
    sender = addresses(original.head, "From")
    lines = [
        "From: Mail Delivery Subsystem <" + MAILER_DAEMON + ">",
        f"To: {sender[0] if sender else ''}",
        "Subject: Delivery Status Notification (Failure)",
        f"Message-ID: {make_msgid(domain='mx.google.com')}",
        f"In-Reply-To: <{original.message_id}>",
        f"References: <{original.message_id}>",
        f"Date: {date}",
        "Auto-Submitted: auto-replied",
        f"X-Failed-Recipients: {failed}",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        f"--{boundary}",
        'Content-Type: text/plain; charset="UTF-8"',
        "",
        "** Address not found **",
        "",
        f"Your message wasn't delivered to {failed} because the address couldn't be found,"
        " or is unable to receive mail.",
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        "Reporting-MTA: dns; googlemail.com",
        f"Arrival-Date: {date}",
        "",
        f"Final-Recipient: rfc822; {failed}",
        "Action: failed",
        "Status: 5.1.1",
        f"Remote-MTA: dns; {failed.rsplit('@', 1)[-1]}",
        "Diagnostic-Code: smtp; 550-5.1.1 The email account that you tried to reach does not exist.",
        f"Last-Attempt-Date: {date}",
        "",
        f"--{boundary}",
        "Content-Type: text/rfc822-headers",
        "",
        original_headers.replace("\r\n", "\n").replace("\n", "\r\n"),
        f"--{boundary}--",
        "",
    ]
    return "\r\n".join(lines).encode("utf-8")


class GmailState:
    def __init__(self, config: GmailConfig) -> None:
        self.config = config
        self.mailboxes: dict[str, Mailbox] = {}
        self.bouncing = {a.lower() for a in config.bouncing_addresses}
        self.bounce_domains = {d.lower() for d in config.bounce_domains}
        self.bounces = 0
        self.pushes = 0
        self.watch_calls = 0
        self.sending_limit_429s = 0
        self.mailbox_limits = {k.lower(): v for k, v in config.mailbox_daily_limits.items()}
        self.mailbox_faults: dict[str, list[MailboxFault]] = {}
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.push_signer = PushSigner(service_account=config.push_service_account)

    def mailbox(self, user_id: str) -> Mailbox:
        email = self.config.user_email if user_id == "me" else user_id
        key = email.lower()
        box = self.mailboxes.get(key)
        if box is None:
            box = Mailbox(email=email, history_id=self.config.initial_history_id)
            self.mailboxes[key] = box
        return box

    def daily_limit(self, box: Mailbox, default: int | None) -> int | None:
        return self.mailbox_limits.get(box.email.lower(), default)

    def mailbox_fault(self, box: Mailbox, operation: str) -> MailboxFault | None:
        """The first pending fault of this mailbox for `operation` (its count taken)."""
        for fault in self.mailbox_faults.get(box.email.lower(), []):
            if fault.next > 0 and (fault.operations is None or operation in fault.operations):
                fault.next -= 1
                return fault
        return None

    def bounces_for(self, address: str) -> bool:
        return address in self.bouncing or address.rsplit("@", 1)[-1] in self.bounce_domains

    def after_change(self, box: Mailbox) -> None:
        now_ms = int(time.time() * 1000)
        if not self.config.push_url or box.watch_expiration_ms is None or box.watch_expiration_ms < now_ms:
            return
        task = asyncio.get_running_loop().create_task(
            self._push(self.config.push_url, box.email, box.history_id)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _push(self, url: str, email: str, history_id: int) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=5.0)
        data = json.dumps({"emailAddress": email, "historyId": history_id}).encode()
        body = {
            "message": {
                "data": b64url(data),
                "messageId": str(time.time_ns()),
                "publishTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            },
            "subscription": "projects/arrears-emulator/subscriptions/gmail-push",
        }
        delay = 0.2
        for _ in range(5):
            try:
                token = self.push_signer.token(self.config.push_audience or url)
                response = await self._client.post(
                    url, json=body, headers={"Authorization": f"Bearer {token}"}
                )
                if response.status_code < 300:
                    self.pushes += 1
                    return
            except httpx.HTTPError as exc:
                log.info("gmail push to %s failed: %r", url, exc)
            await asyncio.sleep(delay)
            delay *= 2

    async def reset(self) -> None:
        await self.cancel_tasks()
        self.mailboxes.clear()
        self.bouncing = {a.lower() for a in self.config.bouncing_addresses}
        self.bounce_domains = {d.lower() for d in self.config.bounce_domains}
        self.bounces = self.pushes = self.watch_calls = self.sending_limit_429s = 0
        self.mailbox_limits = {k.lower(): v for k, v in self.config.mailbox_daily_limits.items()}
        self.mailbox_faults.clear()

    async def cancel_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        await self.cancel_tasks()
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def create_app(config: GmailConfig | None = None) -> FastAPI:
    cfg = config or GmailConfig()
    core = EmulatorCore("gmail", limits=cfg.limits, seed=cfg.seed)
    state = GmailState(cfg)
    core.on_reset(state.reset)
    core.add_stats(
        lambda: {
            "bounces": state.bounces,
            "pushes": state.pushes,
            "watch_calls": state.watch_calls,
            "sending_limit_429s": state.sending_limit_429s,
            "mailboxes": {k: len(v.messages) for k, v in state.mailboxes.items()},
        }
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        core.faults.release_hanging()
        await state.aclose()

    app = FastAPI(title="Gmail API v1 emulator", lifespan=lifespan)
    install_control(app, core)
    app.state.gmail = state

    @app.get(CERTS_PATH, include_in_schema=False)
    async def push_certs() -> dict[str, str]:
        """The certificates of the push tokens (Google's https://www.googleapis.com/oauth2/v1/certs)."""
        return state.push_signer.certs()

    async def admit(request: Request, user_id: str, operation: str) -> tuple[Mailbox, bool] | JSONResponse:
        """Auth, per-user quota units and fault injection. Returns (mailbox, drop_after) or an error."""
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            return google_error(
                401,
                "Request is missing required authentication credential. Expected OAuth 2 access token.",
                "required",
                headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
            )
        box = state.mailbox(user_id)
        fault = state.mailbox_fault(box, operation)
        if fault is not None:
            message = fault.message
            if fault.retry_after_s is not None:
                message += "  Retry after " + _rfc3339(time.time() + fault.retry_after_s)
            if fault.mail_sending:
                message += " (Mail sending)"
            domain = "usageLimits" if fault.status in (403, 429) else "global"
            return google_error(fault.status, message, fault.reason, domain=domain)
        result = await core.gate(operation, key=box.email.lower(), cost=COSTS[operation])
        if result.retry_after_s is not None:
            return google_error(
                429,
                "User-rate limit exceeded.  Retry after "
                + datetime.fromtimestamp(time.time() + result.retry_after_s, UTC).isoformat(
                    timespec="seconds"
                ),
                "userRateLimitExceeded",
                domain="usageLimits",
                headers={"Retry-After": retry_after_header(result.retry_after_s)},
            )
        if result.fail_status is not None:
            return google_error(result.fail_status, "Backend Error", "backendError")
        return box, result.drop_after

    api = APIRouter(prefix="/gmail/v1/users/{userId}")

    @api.get("/profile")
    async def get_profile(request: Request, userId: str) -> Any:
        admitted = await admit(request, userId, "users.getProfile")
        if isinstance(admitted, JSONResponse):
            return admitted
        box, _ = admitted
        return {
            "emailAddress": box.email,
            "messagesTotal": len(box.messages),
            "threadsTotal": len({m.thread_id for m in box.messages.values()}),
            "historyId": str(box.history_id),
        }

    @api.post("/watch")
    async def watch(request: Request, userId: str) -> Any:
        admitted = await admit(request, userId, "users.watch")
        if isinstance(admitted, JSONResponse):
            return admitted
        box, _ = admitted
        try:
            body = WatchBody.model_validate(json.loads(await request.body() or b"{}"))
        except ValueError:
            return google_error(400, "Invalid JSON payload received.", "invalid")
        if not body.topic_name:
            return google_error(
                400, "Invalid topicName does not match projects/*/topics/*", "invalidArgument"
            )
        box.watch_expiration_ms = int((time.time() + cfg.watch_expiration_s) * 1000)
        state.watch_calls += 1
        return {"historyId": str(box.history_id), "expiration": str(box.watch_expiration_ms)}

    @api.post("/stop", status_code=204, response_model=None, response_class=Response)
    async def stop(request: Request, userId: str) -> Any:
        admitted = await admit(request, userId, "users.stop")
        if isinstance(admitted, JSONResponse):
            return admitted
        admitted[0].watch_expiration_ms = None
        return Response(status_code=204)

    @api.post("/messages/send")
    async def send(request: Request, userId: str) -> Any:
        admitted = await admit(request, userId, "users.messages.send")
        if isinstance(admitted, JSONResponse):
            return admitted
        box, drop_after = admitted
        limit = state.daily_limit(box, core.limits.daily_limit)
        now = time.time()
        if (
            core.limits.enabled
            and limit is not None
            and box.sends_in_window(now, cfg.sending_window_s) >= limit + cfg.sending_limit_lag
        ):
            state.sending_limit_429s += 1
            return google_error(
                429,
                "User-rate limit exceeded.  Retry after "
                + _rfc3339(box.window_frees_at(cfg.sending_window_s))
                + " (Mail sending)",
                "rateLimitExceeded",
                domain="usageLimits",
            )
        try:
            body = SendBody.model_validate(json.loads(await request.body() or b"{}"))
        except ValueError:
            return google_error(400, "Invalid JSON payload received.", "invalid")
        if not body.raw:
            return google_error(
                400,
                "'raw' RFC822 payload message string or uploading message via /upload/* URL required",
                "invalidArgument",
            )
        try:
            raw = b64url_decode(body.raw)
        except (binascii.Error, ValueError):
            return google_error(
                400, "Invalid value at 'message.raw' (TYPE_BYTES), Base64 decoding failed", "invalidArgument"
            )
        head = parse_head(raw)
        recipients = addresses(head, "To", "Cc", "Bcc")
        if not recipients:
            return google_error(400, "Recipient address required", "invalidArgument")
        stored = box.add(raw, ["SENT"], thread_id_hint=body.thread_id, head=head)
        box.count_send(now)
        parsed = stored.head
        x_headers = {name: str(value) for name, value in parsed.items() if name.lower().startswith("x-")}
        to_addresses = addresses(parsed, "To")
        core.ledger.record(
            provider_id=stored.id,
            thread_id=stored.thread_id,
            recipient=(to_addresses or recipients)[0],
            recipients=recipients,
            sender=(addresses(parsed, "From") or [box.email])[0],
            notice_id=_header_ci(x_headers, "x-arrears-notice-id"),
            content=stored.header("Subject"),
            dropped=drop_after,
            details={
                "mailbox": box.email.lower(),
                "from": stored.header("From"),
                "to": stored.header("To"),
                "subject": stored.header("Subject"),
                "message_id": stored.message_id,
                "in_reply_to": stored.header("In-Reply-To"),
                "references": stored.header("References"),
                "x_headers": x_headers,
            },
        )
        for address in recipients:
            if state.bounces_for(address):
                box.add(build_dsn(stored, address), ["INBOX", "UNREAD"], thread_id_hint=stored.thread_id)
                state.bounces += 1
        state.after_change(box)
        result = {"id": stored.id, "threadId": stored.thread_id, "labelIds": list(stored.label_ids)}
        if drop_after:
            return DroppedResponse(
                json.dumps(result).encode(), status_code=200, media_type="application/json"
            )
        return result

    @api.get("/messages")
    async def list_messages(
        request: Request,
        userId: str,
        q: str | None = None,
        label_ids: list[str] | None = Query(None, alias="labelIds"),
        max_results: int = Query(100, alias="maxResults", ge=1, le=500),
        page_token: str | None = Query(None, alias="pageToken"),
    ) -> Any:
        admitted = await admit(request, userId, "users.messages.list")
        if isinstance(admitted, JSONResponse):
            return admitted
        box, _ = admitted
        try:
            offset = int(page_token) if page_token else 0
        except ValueError:
            return google_error(400, "Invalid pageToken", "invalidArgument")
        found = box.search(q, label_ids)
        page = found[offset : offset + max_results]
        out: dict[str, Any] = {"resultSizeEstimate": len(found)}
        if page:
            out["messages"] = [m.ref() for m in page]
        if offset + max_results < len(found):
            out["nextPageToken"] = str(offset + max_results)
        return out

    @api.get("/messages/{message_id}")
    async def get_message(
        request: Request,
        userId: str,
        message_id: str,
        format: Format = "full",
        metadata_headers: list[str] | None = Query(None, alias="metadataHeaders"),
    ) -> Any:
        admitted = await admit(request, userId, "users.messages.get")
        if isinstance(admitted, JSONResponse):
            return admitted
        box, _ = admitted
        stored = box.messages.get(message_id)
        if stored is None:
            return google_error(404, "Requested entity was not found.", "notFound")
        return stored.resource(format, metadata_headers)

    @api.get("/history")
    async def list_history(
        request: Request,
        userId: str,
        start_history_id: int | None = Query(None, alias="startHistoryId"),
        history_types: list[str] | None = Query(None, alias="historyTypes"),
        label_id: str | None = Query(None, alias="labelId"),
        max_results: int = Query(100, alias="maxResults", ge=1, le=500),
        page_token: str | None = Query(None, alias="pageToken"),
    ) -> Any:
        admitted = await admit(request, userId, "users.history.list")
        if isinstance(admitted, JSONResponse):
            return admitted
        box, _ = admitted
        if start_history_id is None:
            return google_error(400, "Missing startHistoryId", "invalidArgument")
        box.expire_history(older_than_s=cfg.history_retention_s)
        if start_history_id < box.history_floor:
            return google_error(404, "Requested entity was not found.", "notFound")
        try:
            offset = int(page_token) if page_token else 0
        except ValueError:
            return google_error(400, "Invalid pageToken", "invalidArgument")
        records = box.history_since(start_history_id, label_id)
        if history_types and "messageAdded" not in history_types:
            records = []
        page = records[offset : offset + max_results]
        out: dict[str, Any] = {"historyId": str(box.history_id)}
        if page:
            out["history"] = [r.resource() for r in page]
        if offset + max_results < len(records):
            out["nextPageToken"] = str(offset + max_results)
        return out

    app.include_router(api)

    control = APIRouter(prefix="/_emulator", tags=["emulator control"])

    @control.post("/inbound")
    async def inbound(body: InboundEmail) -> dict[str, Any]:
        to = body.to or cfg.user_email
        if body.mailbox:
            box = state.mailbox(body.mailbox)
        else:
            box = state.mailboxes.get(to.lower()) or state.mailbox("me")
        message = EmailMessage()
        message["From"] = body.from_
        message["To"] = to
        message["Subject"] = body.subject
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = body.message_id or make_msgid(
            domain=body.from_.rsplit("@", 1)[-1].strip("> ")
        )
        if body.in_reply_to:
            message["In-Reply-To"] = body.in_reply_to
        references = body.references or body.in_reply_to
        if references:
            message["References"] = references
        for name, value in body.headers.items():
            message[name] = value
        message.set_content(body.body)
        stored = box.add(message.as_bytes(policy=message.policy.clone(linesep="\r\n")), ["INBOX", "UNREAD"])
        state.after_change(box)
        return {
            "id": stored.id,
            "threadId": stored.thread_id,
            "historyId": str(stored.history_id),
            "message_id": stored.message_id,
        }

    @control.post("/history/expire")
    async def expire_history(body: ExpireHistory) -> dict[str, Any]:
        box = state.mailbox(body.user or "me")
        box.expire_history(up_to=body.up_to_history_id)
        return {"history_floor": str(box.history_floor), "historyId": str(box.history_id)}

    @control.put("/bouncing")
    async def set_bouncing(body: BouncingAddresses) -> dict[str, list[str]]:
        state.bouncing = {a.lower() for a in body.addresses}
        if body.domains is not None:
            state.bounce_domains = {d.lower() for d in body.domains}
        return {"addresses": sorted(state.bouncing), "domains": sorted(state.bounce_domains)}

    @control.get("/mailboxes")
    async def mailboxes() -> dict[str, Any]:
        """Every mailbox: sends in the rolling window, its sending limit, messages stored, pending faults."""
        now = time.time()
        return {
            box.email.lower(): {
                "sends_in_window": box.sends_in_window(now, cfg.sending_window_s),
                "daily_limit": state.daily_limit(box, core.limits.daily_limit),
                "messages": len(box.messages),
                "history_id": str(box.history_id),
                "faults": [f.model_dump() for f in state.mailbox_faults.get(box.email.lower(), []) if f.next],
            }
            for box in state.mailboxes.values()
        }

    @control.put("/mailboxes/{user}/limits")
    async def mailbox_limits(user: str, body: MailboxLimits) -> dict[str, Any]:
        box = state.mailbox(user)
        if body.daily_limit is None:
            state.mailbox_limits.pop(box.email.lower(), None)
        else:
            state.mailbox_limits[box.email.lower()] = body.daily_limit
        return {"mailbox": box.email.lower(), "daily_limit": state.daily_limit(box, core.limits.daily_limit)}

    @control.post("/mailboxes/{user}/faults")
    async def mailbox_faults(user: str, body: MailboxFault) -> dict[str, Any]:
        box = state.mailbox(user)
        state.mailbox_faults.setdefault(box.email.lower(), []).append(body)
        return {
            "mailbox": box.email.lower(),
            "pending": sum(f.next for f in state.mailbox_faults[box.email.lower()]),
        }

    @control.delete("/mailboxes/{user}/faults")
    async def clear_mailbox_faults(user: str) -> dict[str, Any]:
        box = state.mailbox(user)
        state.mailbox_faults.pop(box.email.lower(), None)
        return {"mailbox": box.email.lower(), "pending": 0}

    @control.get("/mailbox")
    async def mailbox_dump(user: str = "me") -> dict[str, Any]:
        box = state.mailbox(user)
        return {
            "email": box.email,
            "historyId": str(box.history_id),
            "history_floor": str(box.history_floor),
            "messages": [box.messages[i].resource("metadata") for i in box.order],
        }

    app.include_router(control)
    return app


def _header_ci(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def build_config(argv: list[str]) -> GmailConfig:
    """Command-line options of ``python -m arrears_emulators gmail``."""
    parser = argparse.ArgumentParser(prog="arrears_emulators gmail")
    parser.add_argument("--config", type=Path, help="JSON file with GmailConfig fields (flags override it)")
    parser.add_argument("--user-email")
    parser.add_argument("--rate-limit", type=float, help="quota units per second per user (default 250)")
    parser.add_argument("--daily-limit", type=int, help="sends per user per rolling 24 hours (default 2000)")
    parser.add_argument("--no-rate-limit", action="store_true")
    parser.add_argument("--bounce-address", action="append", default=[])
    parser.add_argument("--history-retention-s", type=float)
    parser.add_argument("--push-url")
    parser.add_argument("--push-audience", help="aud of the push OIDC token (default: the push URL)")
    parser.add_argument("--push-service-account", help="email of the push OIDC token")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args(argv)
    data: dict[str, Any] = json.loads(args.config.read_text()) if args.config else {}
    for flag in (
        "user_email",
        "history_retention_s",
        "push_url",
        "push_audience",
        "push_service_account",
        "seed",
    ):
        if getattr(args, flag) is not None:
            data[flag] = getattr(args, flag)
    if args.bounce_address:
        data["bouncing_addresses"] = args.bounce_address
    limits = dict(data.get("limits") or {"rate": 250.0, "daily_limit": 2000})
    if args.rate_limit is not None:
        limits["rate"] = args.rate_limit
    if args.daily_limit is not None:
        limits["daily_limit"] = args.daily_limit
    if args.no_rate_limit:
        limits["enabled"] = False
    data["limits"] = limits
    return GmailConfig.model_validate(data)
