"""Production client of the WhatsApp Business Cloud API (Meta Graph API), with every failure classified for
the dispatcher.

One call: ``POST {base}/{version}/{phone_number_id}/messages`` with ``Authorization: Bearer <token>``
(https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages). The answer names the message
``{"messages": [{"id": "wamid...", "message_status": "accepted"}]}``; what happens to it afterwards (sent,
delivered, read, failed) only arrives by status webhook (`webhooks.py`). The Cloud API has no endpoint to
look a sent message up, so an in-doubt send cannot be reconciled.

Graph errors are ``{"error": {"message", "type", "code", "error_subcode"?, "error_data": {"details"}?,
"fbtrace_id"}}``; they are classified by ``code`` (Meta: "build your error handling around code values"),
never by the HTTP status alone — Meta answers its throughput limits with HTTP 400.

Exceptions (from `arrears_shared.providers.errors`):

- `ProviderRateLimited(retry_after_s)` — 130429 (throughput), 131056 (pair rate), 80007 / 4 (account and
  app call limits), 131048 (spam rate limit), or any HTTP 429: nothing was sent. Graph sends no
  ``Retry-After``; the wait is the header if present, else a per-code default (`RATE_LIMITS`).
- `ProviderTransientError` — 5xx answers (131000 "something went wrong", 131016 / 2 service unavailable,
  133004), connect failures and timeouts before the request went out.
- `ProviderAuthError` — 190 (invalid / expired token), 0, 10, 200..299, HTTP 401 / 403.
- `ProviderPermanentError(reason, code=<Graph code>)` — every other 4xx: 131047 re-engagement (free-form
  text outside the 24-hour window: `WindowClosed`), 132000 parameter count mismatch, 132001 template does
  not exist in that language, 131026 undeliverable, 131009 / 100 invalid parameter (an invalid recipient),
  template paused / disabled, ...
- `ProviderInDoubt` — a send whose outcome is unknown: a read timeout after the request was written, the
  connection dropped before the whole answer arrived, a 502 / 504 from a gateway, or an answer that cannot
  be parsed.
"""

from __future__ import annotations

import email.utils
import time
from types import TracebackType
from typing import Any

import httpx
from arrears_shared.providers.errors import (
    ProviderAuthError,
    ProviderInDoubt,
    ProviderPermanentError,
    ProviderRateLimited,
    ProviderTransientError,
)
from arrears_shared.providers.lean_http import LeanTransport
from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROVIDER = "whatsapp-cloud"
DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_API_VERSION = "v23.0"

# Graph code -> seconds to wait when no Retry-After came with it.
RATE_LIMITS: dict[int, float] = {
    130429: 1.0,  # throughput of the phone number (80 messages/s by default)
    131056: 6.0,  # pair rate: about one message every 6 s to one customer
    80007: 60.0,  # WhatsApp Business Account rate limit
    4: 60.0,  # app-level call limit
    131048: 300.0,  # spam rate limit: the number's quality restricts sending
}
TRANSIENT_CODES = frozenset({1, 2, 131000, 131016, 133004})
AUTH_CODES = frozenset({0, 10, 190, *range(200, 300)})
WINDOW_CLOSED = 131047
TEMPLATE_CODES = frozenset({132000, 132001, 132005, 132007, 132012, 132015, 132016})
UNDELIVERABLE = 131026


class WindowClosed(ProviderPermanentError):
    """131047: free-form text outside the 24-hour customer-service window (a template would be accepted)."""


class GraphErrorData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    messaging_product: str | None = None
    details: str | None = None


class GraphError(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message: str = ""
    type: str | None = None
    code: int | None = None
    error_subcode: int | None = None
    error_data: GraphErrorData | None = None
    fbtrace_id: str | None = None

    def describe(self) -> str:
        details = self.error_data.details if self.error_data and self.error_data.details else None
        text = self.message or f"Graph error {self.code}"
        if details and details not in text:
            text = f"{text}: {details}"
        if self.fbtrace_id:
            text = f"{text} [fbtrace_id {self.fbtrace_id}]"
        return text


class _ErrorEnvelope(BaseModel):
    error: GraphError


class Contact(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str
    wa_id: str


class MessageRef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    message_status: str | None = None


class SendResponse(BaseModel):
    """Answer of ``POST /{phone_number_id}/messages``."""

    model_config = ConfigDict(extra="ignore")

    messaging_product: str = "whatsapp"
    contacts: list[Contact] = Field(default_factory=list)
    messages: list[MessageRef] = Field(min_length=1)

    @property
    def wamid(self) -> str:
        return self.messages[0].id

    @property
    def wa_id(self) -> str | None:
        return self.contacts[0].wa_id if self.contacts else None


def parse_retry_after(value: str | None, default: float, now: float | None = None) -> float:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), else `default`."""
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def template_message(name: str, language: str, params: list[str]) -> dict[str, Any]:
    """The ``template`` object of a send: name, language and the body parameters in order."""
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if params:
        template["components"] = [
            {"type": "body", "parameters": [{"type": "text", "text": p} for p in params]}
        ]
    return template


class WhatsAppClient:
    """Async Cloud API client for one business phone number. Safe for concurrent use; close with `aclose()`."""

    def __init__(
        self,
        *,
        access_token: str,
        phone_number_id: str,
        base_url: str = DEFAULT_BASE_URL,
        api_version: str = DEFAULT_API_VERSION,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 32,
    ) -> None:
        self.phone_number_id = phone_number_id
        self.api_version = api_version
        self._path = f"{api_version}/{phone_number_id}/messages"
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            transport=transport or LeanTransport(max_connections=max_connections),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> WhatsAppClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- sends ---------------------------------------------------------------------------------------------
    async def send(
        self, to: str, message: dict[str, Any], *, biz_opaque_callback_data: str | None = None
    ) -> SendResponse:
        """Send one message: `message` is ``{"type": "template", "template": {...}}`` or ``{"type": "text",
        "text": {"body": ...}}``. Not idempotent (the API takes no idempotency key): see `ProviderInDoubt`."""
        body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
        body.update(message)
        if biz_opaque_callback_data is not None:
            body["biz_opaque_callback_data"] = biz_opaque_callback_data[:512]
        response = await self._post(body)
        try:
            return SendResponse.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise ProviderInDoubt(
                f"unexpected WhatsApp answer ({response.status_code}): {exc}"[:500],
                provider=PROVIDER,
                status=response.status_code,
            ) from exc

    async def send_template(
        self,
        to: str,
        name: str,
        language: str,
        params: list[str],
        *,
        biz_opaque_callback_data: str | None = None,
    ) -> SendResponse:
        message = {"type": "template", "template": template_message(name, language, params)}
        return await self.send(to, message, biz_opaque_callback_data=biz_opaque_callback_data)

    async def send_text(
        self, to: str, body: str, *, biz_opaque_callback_data: str | None = None, preview_url: bool = False
    ) -> SendResponse:
        message = {"type": "text", "text": {"body": body, "preview_url": preview_url}}
        return await self.send(to, message, biz_opaque_callback_data=biz_opaque_callback_data)

    # -- plumbing ------------------------------------------------------------------------------------------
    async def _post(self, body: dict[str, Any]) -> httpx.Response:
        try:
            response = await self._client.post(self._path, json=body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ProviderTransientError(
                f"cannot reach the WhatsApp Cloud API: {exc!r}", provider=PROVIDER
            ) from exc
        except httpx.TransportError as exc:
            # The request was (at least partly) written: a read timeout, a dropped connection, a truncated
            # answer. The message may have been accepted.
            raise ProviderInDoubt(f"WhatsApp send outcome unknown: {exc!r}", provider=PROVIDER) from exc
        raise_for_error(response)
        return response


def _graph_error(response: httpx.Response) -> GraphError:
    try:
        return _ErrorEnvelope.model_validate(response.json()).error
    except (ValueError, ValidationError):
        return GraphError(message=response.text[:200] or f"HTTP {response.status_code}")


def raise_for_error(response: httpx.Response) -> None:
    """Raise the classified error of a send's answer (nothing for a 2xx)."""
    status = response.status_code
    if status < 400:
        return
    error = _graph_error(response)
    code = error.code
    reason = error.describe()
    if code in RATE_LIMITS or status == 429:
        default = RATE_LIMITS.get(code or 0, 1.0)
        raise ProviderRateLimited(
            parse_retry_after(response.headers.get("retry-after"), default),
            f"WhatsApp rate limit: {reason}"[:500],
            provider=PROVIDER,
            status=status,
            reason=str(code) if code is not None else None,
        )
    if status in (502, 504):
        # a gateway between us and Meta: the request may have reached the API
        raise ProviderInDoubt(
            f"WhatsApp gateway error {status} on send: {reason}"[:500], provider=PROVIDER, status=status
        )
    if status >= 500 or code in TRANSIENT_CODES:
        raise ProviderTransientError(
            f"WhatsApp server error {status}: {reason}"[:500], provider=PROVIDER, status=status
        )
    code_s = str(code) if code is not None else None
    if code in AUTH_CODES or status in (401, 403):
        raise ProviderAuthError(
            f"WhatsApp rejected our credentials: {reason}"[:500],
            provider=PROVIDER,
            status=status,
            code=code_s,
        )
    if code == WINDOW_CLOSED:
        raise WindowClosed(
            f"outside the 24-hour customer-service window (free-form text needs a customer message in the last"
            f" 24 hours): {reason}"[:500],
            provider=PROVIDER,
            status=status,
            code=code_s,
        )
    if code in TEMPLATE_CODES:
        prefix = "template rejected"
    elif code == UNDELIVERABLE:
        prefix = "undeliverable (not a WhatsApp user?)"
    else:
        prefix = "rejected"
    raise ProviderPermanentError(
        f"WhatsApp {prefix}: {reason}"[:500], provider=PROVIDER, status=status, code=code_s
    )
