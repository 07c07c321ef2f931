"""Client of Twilio's Programmable Messaging REST API (the second SMS provider), every failure classified for
the dispatcher like the QUO client's.

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` (form-encoded ``To``, ``From``, ``Body``,
  optional ``StatusCallback``), HTTP basic auth with the Account SID and Auth Token ->
  ``201`` and the Message resource (https://www.twilio.com/docs/messaging/api/message-resource).
- ``GET .../Messages.json?To=&From=&PageSize=`` lists newest first, paged by ``next_page_uri``: in-doubt
  reconciliation reads it (``DateSent`` is not used as a filter: a message still ``queued`` has no
  ``date_sent`` yet, and a lookup must find it).
- Status callbacks are signed with ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, URL + the POST
  parameters sorted by name)); `valid_signature` checks one.

Errors (Twilio answers ``{"code", "message", "more_info", "status"}``):
`ProviderRateLimited` for 429 (code 20429, ``Retry-After`` honoured), `ProviderTransientError` for 5xx and
connect failures, `ProviderInDoubt` for a send whose outcome is unknown (read timeout, dropped connection,
502/504, an unreadable 2xx body), `ProviderAuthError` for 401/403, `ProviderPermanentError` for other 4xx
(21211 invalid To, 21610 the recipient replied STOP, 21617 body too long, ...).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from arrears_shared.providers.errors import (
    ProviderAuthError,
    ProviderInDoubt,
    ProviderPermanentError,
    ProviderRateLimited,
    ProviderTransientError,
)
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .quo_client import parse_retry_after

PROVIDER = "twilio"
DEFAULT_BASE_URL = "https://api.twilio.com"
API_VERSION = "2010-04-01"
# Message statuses that mean the carrier did not deliver it
FAILED_STATUSES = frozenset({"undelivered", "failed"})


def _rfc2822(v: Any) -> Any:
    return parsedate_to_datetime(v) if isinstance(v, str) and v else v


class TwilioMessage(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    sid: str
    to: str
    from_: str | None = Field(None, alias="from")
    body: str | None = None
    status: str
    direction: str | None = None
    error_code: int | None = None
    error_message: str | None = None
    date_created: datetime | None = None
    date_sent: datetime | None = None

    _dates = field_validator("date_created", "date_sent", mode="before")(_rfc2822)


class _Page(BaseModel):
    model_config = ConfigDict(extra="ignore")

    messages: list[TwilioMessage]
    next_page_uri: str | None = None


class _Error(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: int | None = None
    message: str | None = None


def signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """``X-Twilio-Signature`` of a request Twilio POSTs to `url` with form `params`."""
    payload = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()).decode()


def valid_signature(auth_token: str, url: str, params: Mapping[str, str], header: str | None) -> bool:
    return bool(header) and hmac.compare_digest(signature(auth_token, url, params), header or "")


class TwilioClient:
    """Async Twilio Messages client; one per account; safe for concurrent use; close with `aclose()`."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        max_connections: int = 16,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.account_sid = account_sid
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            auth=(account_sid, auth_token),
            headers={"Accept": "application/json"},
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )

    @property
    def _messages(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send_message(
        self, *, to: str, from_: str, body: str, status_callback: str | None = None
    ) -> TwilioMessage:
        """Create one message. Not idempotent (Twilio has no idempotency key): see `ProviderInDoubt`."""
        form = {"To": to, "From": from_, "Body": body}
        if status_callback:
            form["StatusCallback"] = status_callback
        response = await self._request("POST", self._messages, idempotent=False, data=form)
        return self._parse(TwilioMessage, response, idempotent=False)

    async def list_messages(
        self, *, to: str, from_: str, created_after: datetime | None = None, page_size: int = 50
    ) -> list[TwilioMessage]:
        """Messages from `from_` to `to`, newest first, until the first one created before `created_after`."""
        out: list[TwilioMessage] = []
        url: str | None = self._messages
        params: dict[str, Any] | None = {"To": to, "From": from_, "PageSize": max(1, min(page_size, 1000))}
        while url is not None:
            response = await self._request("GET", url, idempotent=True, params=params)
            page = self._parse(_Page, response, idempotent=True)
            for m in page.messages:
                if (
                    created_after is not None
                    and m.date_created is not None
                    and m.date_created < created_after
                ):
                    return out
                out.append(m)
            url, params = page.next_page_uri, None
        return out

    async def _request(self, method: str, url: str, *, idempotent: bool, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
            raise ProviderTransientError(f"cannot reach Twilio: {e!r}", provider=PROVIDER) from e
        except httpx.TransportError as e:
            if idempotent:
                raise ProviderTransientError(f"Twilio request failed: {e!r}", provider=PROVIDER) from e
            raise ProviderInDoubt(f"Twilio send outcome unknown: {e!r}", provider=PROVIDER) from e
        self._raise_for_status(response, idempotent=idempotent)
        return response

    @staticmethod
    def _raise_for_status(response: httpx.Response, *, idempotent: bool) -> None:
        status = response.status_code
        if status < 400:
            return
        try:
            err = _Error.model_validate(response.json())
        except (ValueError, ValidationError):
            err = _Error(message=response.text[:200] or None)
        code = str(err.code) if err.code is not None else None
        reason = f"Twilio {code or status}: {err.message or f'HTTP {status}'}"
        if status == 429:
            raise ProviderRateLimited(
                parse_retry_after(response.headers.get("retry-after")), reason, provider=PROVIDER, status=429
            )
        if status >= 500:
            if not idempotent and status in (502, 504):
                raise ProviderInDoubt(
                    f"Twilio gateway error {status} on send", provider=PROVIDER, status=status
                )
            raise ProviderTransientError(reason, provider=PROVIDER, status=status)
        if status in (401, 403):
            raise ProviderAuthError(reason, provider=PROVIDER, status=status, code=code)
        raise ProviderPermanentError(reason, provider=PROVIDER, status=status, code=code)

    @staticmethod
    def _parse(model: type[Any], response: httpx.Response, *, idempotent: bool) -> Any:
        try:
            return model.model_validate(response.json())
        except (ValueError, ValidationError) as e:
            message = f"unexpected Twilio response ({response.status_code}): {e}"
            if idempotent:
                raise ProviderTransientError(message, provider=PROVIDER, status=response.status_code) from e
            raise ProviderInDoubt(message, provider=PROVIDER, status=response.status_code) from e
