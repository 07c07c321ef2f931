"""Production client of the QUO (OpenPhone) REST API, with every failure classified for the dispatcher.

API version: the client speaks the path-versioned **v1** API (``https://api.openphone.com/v1``,
https://www.quo.com/docs/mdx/api-reference/introduction) — the one whose message and phone-number
resources are documented and emulated. QUO also serves a dated generation
(https://www.quo.com/docs/2026-03-30/versioning): unversioned paths and a required ``Quo-Api-Version``
header. Passing ``api_version="2026-03-30"`` (``ARREARS_QUO_API_VERSION``) sends that header on every request;
point ``base_url`` at the unversioned root then. A version change is that setting, not a code change (the
resources we read ignore unknown fields, which is the only way a dated version changes underneath us).

Phone-number ids: ``GET /messages`` takes the ``PN…`` id of our number as ``phoneNumberId``, never its E.164
form (https://www.quo.com/docs/mdx/api-reference/messages/list-messages); `resolve_phone_number_id` finds it
with ``GET /phone-numbers``.

Exceptions (from `arrears_shared.providers.errors`):

- `ProviderRateLimited(retry_after_s)` — 429; nothing was sent.
- `ProviderTransientError` — 5xx, connect failures, timeouts of idempotent reads.
- `ProviderPermanentError(reason)` — other 4xx (invalid number, content too long, ...);
  `ProviderAuthError` for 401/403.
- `ProviderInDoubt` — a send whose outcome is unknown: read timeout after the request was written, the
  connection dropped before the whole response arrived, or a 502/504 from a gateway. Reconcile with
  `list_messages` before resending.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal, TypeVar

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

M = TypeVar("M", bound=BaseModel)

PROVIDER = "quo"
DEFAULT_BASE_URL = "https://api.openphone.com/v1"
MAX_PAGE_SIZE = 100
API_VERSION_HEADER = "Quo-Api-Version"
# Message statuses that mean the carrier did not deliver (v1 `undelivered`; `failed` in the new webhooks).
FAILED_STATUSES = frozenset({"undelivered", "failed"})


class QuoMessage(BaseModel):
    """A QUO message resource (``data`` of ``POST /messages``, items of ``GET /messages``)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str
    to: list[str]
    from_: str = Field(alias="from")
    text: str | None = None
    phone_number_id: str | None = Field(None, alias="phoneNumberId")
    direction: Literal["incoming", "outgoing"]
    user_id: str | None = Field(None, alias="userId")
    status: str | None = None
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime | None = Field(None, alias="updatedAt")


class QuoPhoneNumber(BaseModel):
    """An item of ``GET /phone-numbers``."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str
    number: str | None = None
    formatted_number: str | None = Field(None, alias="formattedNumber")


class _PhoneNumberList(BaseModel):
    data: list[QuoPhoneNumber]


class QuoSendRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    content: str = Field(min_length=1, max_length=1600)
    from_: str = Field(alias="from")
    to: list[str] = Field(min_length=1, max_length=1)
    user_id: str | None = Field(None, alias="userId")
    set_inbox_status: Literal["done"] | None = Field(None, alias="setInboxStatus")


class _MessageEnvelope(BaseModel):
    data: QuoMessage


class _MessagePage(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    data: list[QuoMessage]
    total_items: int | None = Field(None, alias="totalItems")
    next_page_token: str | None = Field(None, alias="nextPageToken")


class _QuoErrorBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    message: str | None = None
    code: str | None = None
    title: str | None = None
    errors: list[dict[str, Any]] = Field(default_factory=list)


def parse_retry_after(value: str | None, default: float = 1.0, now: float | None = None) -> float:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
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
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class QuoClient:
    """Async QUO client. One instance per API key; safe for concurrent use; close with `aclose()`."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        user_id: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 32,
        api_version: str | None = None,
    ) -> None:
        self._user_id = user_id
        self.api_version = api_version
        headers = {"Authorization": api_key, "Accept": "application/json"}
        if api_version:
            headers[API_VERSION_HEADER] = api_version
        # The lean transport (one socket write per request, no anyio) unless one is given (tests, proxies):
        # httpx's default costs more CPU per call than the rest of a send.
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            transport=transport or LeanTransport(max_connections=max_connections),
            # Keep every connection alive (httpx keeps only 20 by default and reconnects for the rest).
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> QuoClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # ---- API ---------------------------------------------------------------------------------------
    async def send_message(
        self,
        *,
        content: str,
        from_: str,
        to: str,
        user_id: str | None = None,
        set_inbox_status: Literal["done"] | None = None,
    ) -> QuoMessage:
        """``POST /messages`` to one recipient. Not idempotent: see `ProviderInDoubt`."""
        try:
            body = QuoSendRequest(
                content=content,
                from_=from_,
                to=[to],
                user_id=user_id or self._user_id,
                set_inbox_status=set_inbox_status,
            )
        except ValidationError as exc:
            raise ProviderPermanentError(
                f"invalid message: {exc.errors()[0]['msg']}", provider=PROVIDER
            ) from exc
        response = await self._request(
            "POST", "messages", json=body.model_dump(by_alias=True, exclude_none=True), idempotent=False
        )
        return self._parse(_MessageEnvelope, response, idempotent=False).data

    async def list_messages(
        self,
        *,
        phone_number_id: str,
        participant: str,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        max_results: int = 50,
        limit: int | None = None,
    ) -> list[QuoMessage]:
        """``GET /messages`` for the conversation with `participant`, following ``nextPageToken``.

        `phone_number_id` is the ``PN…`` id (QUO refuses the E.164 form there). `max_results` is the page
        size (1..100); `limit` caps the total returned (default: all pages). The order of the items is not
        relied on: every page is read."""
        if not phone_number_id.startswith("PN"):
            raise ValueError(f"phoneNumberId must be a PN… id, not {phone_number_id!r}")
        params: dict[str, Any] = {
            "phoneNumberId": phone_number_id,
            "participants": [participant],
            "maxResults": max(1, min(max_results, MAX_PAGE_SIZE)),
        }
        if created_after is not None:
            params["createdAfter"] = _iso(created_after)
        if created_before is not None:
            params["createdBefore"] = _iso(created_before)
        out: list[QuoMessage] = []
        while True:
            response = await self._request("GET", "messages", params=params, idempotent=True)
            page = self._parse(_MessagePage, response, idempotent=True)
            out.extend(page.data)
            if limit is not None and len(out) >= limit:
                return out[:limit]
            if not page.next_page_token or not page.data:
                return out
            params["pageToken"] = page.next_page_token

    async def list_phone_numbers(self) -> list[QuoPhoneNumber]:
        """``GET /phone-numbers``: the workspace's numbers with their ``PN…`` ids."""
        response = await self._request("GET", "phone-numbers", idempotent=True)
        return self._parse(_PhoneNumberList, response, idempotent=True).data

    async def resolve_phone_number_id(self, number_or_id: str) -> str:
        """The ``PN…`` id of our number (given as E.164 or already as an id). Raises
        `ProviderPermanentError` when the workspace has no such number (a configuration error)."""
        if number_or_id.startswith("PN"):
            return number_or_id
        for pn in await self.list_phone_numbers():
            if pn.number == number_or_id:
                return pn.id
        raise ProviderPermanentError(
            f"QUO has no phone number {number_or_id} in this workspace", provider=PROVIDER, status=404
        )

    async def get_message(self, message_id: str) -> QuoMessage:
        response = await self._request("GET", f"messages/{message_id}", idempotent=True)
        return self._parse(_MessageEnvelope, response, idempotent=True).data

    # ---- plumbing ----------------------------------------------------------------------------------
    async def _request(self, method: str, path: str, *, idempotent: bool, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._pooled(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ProviderTransientError(f"cannot reach QUO: {exc!r}", provider=PROVIDER) from exc
        except httpx.TransportError as exc:
            # The request was (at least partly) written: a read timeout, a dropped connection, a truncated
            # response. Harmless for reads; for a send the provider may have accepted it.
            if idempotent:
                raise ProviderTransientError(f"QUO request failed: {exc!r}", provider=PROVIDER) from exc
            raise ProviderInDoubt(f"QUO send outcome unknown: {exc!r}", provider=PROVIDER) from exc
        self._raise_for_status(response, idempotent=idempotent)
        return response

    async def _pooled(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self._client.request(method, path, **kwargs)

    @staticmethod
    def _raise_for_status(response: httpx.Response, *, idempotent: bool) -> None:
        status = response.status_code
        if status < 400:
            return
        if status == 429:
            raise ProviderRateLimited(
                parse_retry_after(response.headers.get("retry-after")),
                "QUO rate limit exceeded",
                provider=PROVIDER,
                status=429,
            )
        if status >= 500:
            if not idempotent and status in (502, 504):
                raise ProviderInDoubt(f"QUO gateway error {status} on send", provider=PROVIDER, status=status)
            raise ProviderTransientError(f"QUO server error {status}", provider=PROVIDER, status=status)
        try:
            error = _QuoErrorBody.model_validate(response.json())
        except (ValueError, ValidationError):
            error = _QuoErrorBody(message=response.text[:200] or None)
        details = "; ".join(
            f"{e.get('path', '')}: {e.get('message', '')}" for e in error.errors if isinstance(e, Mapping)
        )
        reason = error.message or error.title or f"HTTP {status}"
        if details:
            reason = f"{reason} ({details})"
        if status in (401, 403):
            raise ProviderAuthError(reason, provider=PROVIDER, status=status, code=error.code)
        raise ProviderPermanentError(reason, provider=PROVIDER, status=status, code=error.code)

    @staticmethod
    def _parse(model: type[M], response: httpx.Response, *, idempotent: bool) -> M:
        try:
            return model.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            message = f"unexpected QUO response ({response.status_code}): {exc}"
            if idempotent:
                raise ProviderTransientError(message, provider=PROVIDER, status=response.status_code) from exc
            raise ProviderInDoubt(message, provider=PROVIDER, status=response.status_code) from exc
