"""Production client of the Gmail API v1 (google-api-python-client), with failures classified for the
dispatcher and the responses service. Needs the `gmail` extra: `arrears-shared[gmail]`.

(One client for both services: the email dispatcher sends with it, the responses service reads replies.)

The blocking client runs in worker threads (`asyncio.to_thread`). httplib2 objects are not thread-safe, so
every thread has its own ``AuthorizedHttp(credentials, http=httplib2.Http(timeout=...))`` (one for reads, one
for sends), kept alive between its calls and replaced after an error or 4 s idle; the discovery-based service
object is built once (``static_discovery=True``, ``cache_discovery=False``) and shared.

Exceptions (from `arrears_shared.providers.errors`, plus `HistoryExpired` here):

- 429, or 403 ``rateLimitExceeded``/``userRateLimitExceeded`` -> `ProviderRateLimited`, waiting the time the
  message names ("Retry after <RFC 3339 time>"), else ``Retry-After``, else 1 s
- 429 "User-rate limit exceeded ... (Mail sending)": the mailbox's daily sending limit
  (https://developers.google.com/workspace/gmail/api/guides/handle-errors#mail-sending_limits): the retry time
  is only in the message (no header), the limit is a rolling 24 hours (not the UTC day), and it may start
  minutes after sends still returned 200 -> `ProviderQuotaExhausted` until that time (1 h when it names none)
- 403/429 ``dailyLimitExceeded``/``quotaExceeded`` -> `ProviderQuotaExhausted` (same retry time)
- 5xx, connect failures -> `ProviderTransientError`; 502/504 on a send -> `ProviderInDoubt`
- 400/404 and other 4xx -> `ProviderPermanentError`; 401 / other 403 -> `ProviderAuthError`
- a timeout or dropped/truncated response while sending -> `ProviderInDoubt`
- ``history.list`` 404 -> `HistoryExpired` (the caller must do a full sync)

Reconciling an in-doubt send: give each notice a deterministic ``Message-ID`` and look it up with
``find_by_header("Message-ID", ...)`` (Gmail's ``rfc822msgid:`` search). Gmail does not index custom headers
such as ``X-Arrears-Notice-Id``; for those, `find_by_header` searches the value as text and verifies the
header of every candidate, which only finds the message if the value also appears in indexed text.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal

import google.auth.exceptions
import google_auth_httplib2
import httplib2
from google.auth.credentials import Credentials as BaseCredentials
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from arrears_shared.providers.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderInDoubt,
    ProviderPermanentError,
    ProviderQuotaExhausted,
    ProviderRateLimited,
    ProviderTransientError,
)

PROVIDER = "gmail"
GMAIL_SEND_SCOPE = "https://www.googleapis.com/auth/gmail.send"
GMAIL_READONLY_SCOPE = "https://www.googleapis.com/auth/gmail.readonly"
DEFAULT_SCOPES: tuple[str, ...] = (GMAIL_SEND_SCOPE, GMAIL_READONLY_SCOPE)
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"

# An idle kept connection is replaced after this long (servers commonly close idle ones after 5 s or more).
_KEEPALIVE_S = 4.0

RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
QUOTA_REASONS = frozenset({"dailyLimitExceeded", "quotaExceeded", "dailyLimitExceededUnreg"})
MAIL_SENDING = "(Mail sending)"
# When Gmail names no retry time for the sending limit: look again in an hour (the window is rolling).
QUOTA_DEFAULT_RETRY_S = 3600.0
_RETRY_AFTER_TIME = re.compile(r"Retry after\s+(\d{4}-\d{2}-\d{2}T[0-9:.]+(?:Z|[+-]\d{2}:?\d{2})?)", re.I)


class HistoryExpired(ProviderError):
    """``history.list`` answered 404: the start history id is too old; do a full sync."""


class GmailSent(BaseModel):
    id: str
    thread_id: str
    label_ids: list[str] = Field(default_factory=list)


class GmailMessageRef(BaseModel):
    id: str
    thread_id: str
    label_ids: list[str] = Field(default_factory=list)


class GmailHistoryRecord(BaseModel):
    id: int
    messages_added: list[GmailMessageRef] = Field(default_factory=list)


class GmailHistory(BaseModel):
    history_id: int = Field(description="the mailbox's current history id; store it as the next start id")
    records: list[GmailHistoryRecord] = Field(default_factory=list)

    @property
    def added(self) -> list[GmailMessageRef]:
        return [m for r in self.records for m in r.messages_added]


class GmailMessage(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    id: str
    thread_id: str
    label_ids: list[str] = Field(default_factory=list)
    history_id: int | None = None
    internal_date_ms: int | None = None
    snippet: str = ""
    headers: list[tuple[str, str]] = Field(default_factory=list, description="top-level headers, in order")
    payload: dict[str, Any] | None = None
    raw: bytes | None = None

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


class GmailProfile(BaseModel):
    email_address: str
    messages_total: int = 0
    threads_total: int = 0
    history_id: int


class GmailWatch(BaseModel):
    history_id: int
    expiration_ms: int


def retry_after_from_message(message: str, now: datetime | None = None) -> float | None:
    """Seconds until the "Retry after <time>" a Gmail error message names, or None."""
    match = _RETRY_AFTER_TIME.search(message or "")
    if match is None:
        return None
    try:
        when = datetime.fromisoformat(match.group(1).replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _error_reason(exc: HttpError) -> tuple[str | None, str]:
    """(first ``errors[].reason``, message) of a Google error body."""
    reason: str | None = None
    message = str(exc.reason or "")
    try:
        body = json.loads(exc.content.decode("utf-8") if isinstance(exc.content, bytes) else exc.content)
        error = body.get("error", {}) if isinstance(body, dict) else {}
        if isinstance(error, dict):
            message = str(error.get("message") or message)
            errors = error.get("errors") or []
            if errors and isinstance(errors[0], dict):
                reason = errors[0].get("reason")
    except (ValueError, AttributeError, UnicodeDecodeError):
        pass
    return reason, message


def classify_http_error(exc: HttpError, *, idempotent: bool) -> ProviderError:
    status = int(exc.resp.status)
    reason, message = _error_reason(exc)
    retry_after_header = exc.resp.get("retry-after")
    named = retry_after_from_message(message)
    if status in (403, 429) and (reason in QUOTA_REASONS or (status == 429 and MAIL_SENDING in message)):
        return ProviderQuotaExhausted(
            named if named is not None else QUOTA_DEFAULT_RETRY_S,
            message,
            provider=PROVIDER,
            status=status,
            reason=reason or "mailSending",
        )
    if status == 429 or (status == 403 and reason in RATE_REASONS):
        header_s: float | None = None
        if retry_after_header:
            try:
                header_s = float(retry_after_header)
            except ValueError:
                header_s = None
        known = [v for v in (named, header_s) if v is not None]
        retry_after = max(known) if known else 1.0  # the later of the two when both are given
        return ProviderRateLimited(retry_after, message, provider=PROVIDER, status=status, reason=reason)
    if status >= 500:
        if not idempotent and status in (502, 504):
            return ProviderInDoubt(
                f"Gmail gateway error {status} on send: {message}", provider=PROVIDER, status=status
            )
        return ProviderTransientError(
            f"Gmail server error {status}: {message}", provider=PROVIDER, status=status
        )
    if status in (401, 403):
        return ProviderAuthError(message, provider=PROVIDER, status=status, code=reason)
    return ProviderPermanentError(message, provider=PROVIDER, status=status, code=reason)


def classify_exception(exc: BaseException, *, idempotent: bool) -> ProviderError | None:
    """Map a transport-level exception to a provider error; None if it is not a provider failure."""
    if isinstance(exc, HttpError):
        return classify_http_error(exc, idempotent=idempotent)
    if isinstance(exc, google.auth.exceptions.RefreshError):
        return ProviderAuthError(f"cannot refresh Gmail credentials: {exc}", provider=PROVIDER)
    if isinstance(exc, google.auth.exceptions.TransportError):
        return ProviderTransientError(f"cannot reach Google auth: {exc}", provider=PROVIDER)
    if isinstance(exc, ConnectionRefusedError | httplib2.ServerNotFoundError | socket.gaierror):
        return ProviderTransientError(f"cannot reach Gmail: {exc!r}", provider=PROVIDER)
    if isinstance(exc, ResendRefused):
        return ProviderInDoubt(f"Gmail send outcome unknown: {exc}", provider=PROVIDER)
    if isinstance(exc, TimeoutError | http.client.HTTPException | OSError):
        if idempotent:
            return ProviderTransientError(f"Gmail request failed: {exc!r}", provider=PROVIDER)
        return ProviderInDoubt(f"Gmail send outcome unknown: {exc!r}", provider=PROVIDER)
    return None


def _headers_of(payload: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not payload:
        return []
    return [(str(h.get("name", "")), str(h.get("value", ""))) for h in payload.get("headers", [])]


def _message_from(resource: dict[str, Any]) -> GmailMessage:
    raw = resource.get("raw")
    return GmailMessage(
        id=resource["id"],
        thread_id=resource.get("threadId", resource["id"]),
        label_ids=list(resource.get("labelIds", [])),
        history_id=int(resource["historyId"]) if resource.get("historyId") else None,
        internal_date_ms=int(resource["internalDate"]) if resource.get("internalDate") else None,
        snippet=resource.get("snippet", ""),
        headers=_headers_of(resource.get("payload")),
        payload=resource.get("payload"),
        raw=base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)) if raw else None,
    )


def _method(collection: str, method: str, params: dict[str, Any]) -> Callable[[Any], Any]:
    """``service.users().<collection>().<method>(**params)`` as a deferred request factory."""
    frozen = dict(params)

    def make(service: Any) -> Any:
        return getattr(getattr(service.users(), collection)(), method)(**frozen)

    return make


class _Collections:
    """A discovery resource whose sub-collections (``users()``, ``messages()``, ...) are built once: building
    one creates every method of the collection dynamically, which cost more than the request itself.
    Methods (always called with arguments) pass through; each call still makes a fresh request object."""

    def __init__(self, resource: Any) -> None:
        self._resource = resource
        self._built: dict[str, _Collections] = {}

    def __getattr__(self, name: str) -> Callable[..., Any]:
        attr = getattr(self._resource, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if args or kwargs:
                return attr(*args, **kwargs)
            built = self._built.get(name)
            if built is None:
                built = self._built[name] = _Collections(attr())
            return built

        return call


class ResendRefused(Exception):
    """httplib2 wanted to transmit a non-idempotent request a second time (see `_NoResendHttp`). Not an
    `HTTPException`/`OSError`, so httplib2's own retry handling lets it through."""


class _NoResendHttp(httplib2.Http):
    """httplib2 silently transmits a request again when the connection closes before the status line
    arrives on the first try (a stale keep-alive connection; but also a provider that accepted the send and
    then lost the connection). For a send that is a possible duplicate: refuse the second transmission, so
    the call fails as in doubt and is reconciled instead."""

    def _conn_request(self, conn: Any, request_uri: str, method: str, body: Any, headers: Any) -> Any:
        transmit = conn.request
        sent = False

        def once(*args: Any, **kwargs: Any) -> Any:
            nonlocal sent
            if sent:
                raise ResendRefused(
                    f"not re-sending {method} {request_uri}: the first attempt may have arrived"
                )
            sent = True
            return transmit(*args, **kwargs)

        conn.request = once
        try:
            return super()._conn_request(conn, request_uri, method, body, headers)
        finally:
            conn.request = transmit


class GmailClient:
    """Async wrapper of the Gmail API for one mailbox (`user_id`, ``"me"`` by default)."""

    def __init__(
        self,
        credentials: BaseCredentials,
        *,
        api_endpoint: str | None = None,
        user_id: str = "me",
        timeout_s: float = 30.0,
        read_retries: int = 0,
        max_workers: int | None = None,
    ) -> None:
        self._credentials = credentials
        # Calls run in the default executor (asyncio.to_thread), or in a pool of their own of `max_workers`
        # threads (a dispatcher sizes it to its concurrent sends).
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="gmail") if max_workers else None
        self._timeout_s = timeout_s
        # per-thread keep-alive http objects (httplib2 is not thread-safe), all of them for close()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._https: set[google_auth_httplib2.AuthorizedHttp] = set()
        self._read_retries = read_retries
        self.user_id = user_id
        client_options = {"api_endpoint": api_endpoint} if api_endpoint else None
        self._service = build(
            "gmail",
            "v1",
            http=self._new_http(),
            static_discovery=True,
            cache_discovery=False,
            client_options=client_options,
        )
        self._api = _Collections(self._service)

    # ---- construction ------------------------------------------------------------------------------
    @classmethod
    def from_user_token(
        cls,
        *,
        token: str | None,
        refresh_token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        token_uri: str = GOOGLE_TOKEN_URI,
        scopes: Sequence[str] = DEFAULT_SCOPES,
        **kwargs: Any,
    ) -> GmailClient:
        """OAuth user credentials (an access token, optionally refreshable with a refresh token)."""
        creds = user_credentials.Credentials(
            token=token,
            refresh_token=refresh_token,
            client_id=client_id,
            client_secret=client_secret,
            token_uri=token_uri,
            scopes=list(scopes),
        )
        return cls(creds, **kwargs)

    @classmethod
    def from_service_account_file(
        cls, path: str, *, subject: str, scopes: Sequence[str] = DEFAULT_SCOPES, **kwargs: Any
    ) -> GmailClient:
        """A service account with domain-wide delegation acting as `subject` (the sending mailbox)."""
        creds = service_account.Credentials.from_service_account_file(
            path, scopes=list(scopes), subject=subject
        )
        return cls(creds, **kwargs)

    @classmethod
    def for_emulator(cls, api_endpoint: str, *, token: str = "emulator-token", **kwargs: Any) -> GmailClient:
        """A static bearer token against the Gmail emulator."""
        return cls(user_credentials.Credentials(token=token), api_endpoint=api_endpoint, **kwargs)

    def _new_http(self, *, resend: bool = True) -> google_auth_httplib2.AuthorizedHttp:
        http = httplib2.Http(timeout=self._timeout_s) if resend else _NoResendHttp(timeout=self._timeout_s)
        return google_auth_httplib2.AuthorizedHttp(self._credentials, http=http)

    # ---- execution ---------------------------------------------------------------------------------
    def _thread_http(self, idempotent: bool) -> google_auth_httplib2.AuthorizedHttp:
        """This thread's http object for reads or for sends, kept between calls (keep-alive: no TCP and TLS
        handshake per call). One left idle longer than `_KEEPALIVE_S` is replaced first, so a send is not
        written into a connection the server is about to close (which would make it needlessly in doubt)."""
        key = "read" if idempotent else "send"
        kept: tuple[google_auth_httplib2.AuthorizedHttp, float] | None = getattr(self._local, key, None)
        if kept is not None:
            h, last_used = kept
            if time.monotonic() - last_used < _KEEPALIVE_S:
                return h
            self._drop_http(key)
        h = self._new_http(resend=idempotent)
        setattr(self._local, key, (h, time.monotonic()))
        with self._lock:
            self._https.add(h)
        return h

    def _drop_http(self, key: str) -> None:
        kept = getattr(self._local, key, None)
        if kept is not None:
            setattr(self._local, key, None)
            with self._lock:
                self._https.discard(kept[0])
            kept[0].close()

    def _execute_blocking(self, make: Callable[[Any], Any], idempotent: bool) -> Any:
        h = self._thread_http(idempotent)
        key = "read" if idempotent else "send"
        try:
            result = make(self._api).execute(http=h, num_retries=self._read_retries if idempotent else 0)
        except BaseException:
            self._drop_http(key)  # the connection's state is unknown: never reuse it
            raise
        setattr(self._local, key, (h, time.monotonic()))
        return result

    async def _call(self, make: Callable[[Any], Any], *, idempotent: bool) -> Any:
        try:
            if self._executor is None:
                return await asyncio.to_thread(self._execute_blocking, make, idempotent)
            return await asyncio.get_running_loop().run_in_executor(
                self._executor, self._execute_blocking, make, idempotent
            )
        except Exception as exc:
            classified = classify_exception(exc, idempotent=idempotent)
            if classified is None:
                raise
            raise classified from exc

    # ---- API ---------------------------------------------------------------------------------------
    async def send_raw(self, raw_mime: bytes, thread_id: str | None = None) -> GmailSent:
        """``users.messages.send`` of a complete RFC 2822 message. Not idempotent: see `ProviderInDoubt`."""
        body: dict[str, str] = {"raw": base64.urlsafe_b64encode(raw_mime).decode("ascii")}
        if thread_id:
            body["threadId"] = thread_id
        result = await self._call(
            lambda s: s.users().messages().send(userId=self.user_id, body=body), idempotent=False
        )
        return GmailSent(
            id=result["id"],
            thread_id=result.get("threadId", result["id"]),
            label_ids=result.get("labelIds", []),
        )

    async def search(
        self, query: str, *, label_ids: Sequence[str] | None = None, max_results: int = 100
    ) -> list[str]:
        """Message ids matching a Gmail search query (all pages)."""
        ids: list[str] = []
        page_token: str | None = None
        while True:
            token = page_token
            params: dict[str, Any] = {"userId": self.user_id, "q": query, "maxResults": max_results}
            if label_ids:
                params["labelIds"] = list(label_ids)
            if token:
                params["pageToken"] = token
            result = await self._call(_method("messages", "list", params), idempotent=True)
            ids.extend(m["id"] for m in result.get("messages", []))
            page_token = result.get("nextPageToken")
            if not page_token:
                return ids

    async def find_by_message_id(self, message_id: str) -> list[str]:
        return await self.search(f"rfc822msgid:{message_id.strip().strip('<>')}")

    async def find_by_header(self, header_name: str, value: str) -> list[str]:
        """Ids of messages whose header `header_name` equals `value` (for in-doubt reconciliation)."""
        if header_name.lower() == "message-id":
            return await self.find_by_message_id(value)
        candidates = await self.search(f'"{value}"')
        wanted = value.strip().lower()
        matching: list[str] = []
        for message_id in candidates:
            message = await self.get_message(message_id, format="metadata", metadata_headers=[header_name])
            if any(
                k.lower() == header_name.lower() and v.strip().lower() == wanted for k, v in message.headers
            ):
                matching.append(message_id)
        return matching

    async def get_message(
        self,
        message_id: str,
        *,
        format: Literal["minimal", "full", "raw", "metadata"] = "full",
        metadata_headers: Sequence[str] | None = None,
    ) -> GmailMessage:
        params: dict[str, Any] = {"userId": self.user_id, "id": message_id, "format": format}
        if metadata_headers:
            params["metadataHeaders"] = list(metadata_headers)
        result = await self._call(lambda s: s.users().messages().get(**params), idempotent=True)
        return _message_from(result)

    async def history(
        self,
        start_history_id: int | str,
        *,
        history_types: Sequence[str] = ("messageAdded",),
        label_id: str | None = None,
    ) -> GmailHistory:
        """All ``history.list`` records after `start_history_id` (all pages). Raises `HistoryExpired` on 404."""
        records: list[GmailHistoryRecord] = []
        page_token: str | None = None
        current = int(start_history_id)
        while True:
            params: dict[str, Any] = {
                "userId": self.user_id,
                "startHistoryId": str(start_history_id),
                "historyTypes": list(history_types),
            }
            if label_id:
                params["labelId"] = label_id
            if page_token:
                params["pageToken"] = page_token
            try:
                result = await self._call(_method("history", "list", params), idempotent=True)
            except ProviderPermanentError as exc:
                if exc.status == 404:
                    raise HistoryExpired(
                        f"history id {start_history_id} is no longer available", provider=PROVIDER, status=404
                    ) from exc
                raise
            current = max(current, int(result.get("historyId", current)))
            for item in result.get("history", []):
                added = [
                    GmailMessageRef(
                        id=a["message"]["id"],
                        thread_id=a["message"].get("threadId", a["message"]["id"]),
                        label_ids=list(a["message"].get("labelIds", [])),
                    )
                    for a in item.get("messagesAdded", [])
                ]
                records.append(GmailHistoryRecord(id=int(item["id"]), messages_added=added))
            page_token = result.get("nextPageToken")
            if not page_token:
                return GmailHistory(history_id=current, records=records)

    async def get_profile(self) -> GmailProfile:
        result = await self._call(lambda s: s.users().getProfile(userId=self.user_id), idempotent=True)
        return GmailProfile(
            email_address=result["emailAddress"],
            messages_total=int(result.get("messagesTotal", 0)),
            threads_total=int(result.get("threadsTotal", 0)),
            history_id=int(result["historyId"]),
        )

    async def watch(self, topic_name: str, *, label_ids: Sequence[str] | None = None) -> GmailWatch:
        body: dict[str, Any] = {"topicName": topic_name}
        if label_ids:
            body["labelIds"] = list(label_ids)
        result = await self._call(lambda s: s.users().watch(userId=self.user_id, body=body), idempotent=True)
        return GmailWatch(history_id=int(result["historyId"]), expiration_ms=int(result["expiration"]))

    async def stop_watch(self) -> None:
        await self._call(lambda s: s.users().stop(userId=self.user_id), idempotent=True)

    def close(self) -> None:
        """Release the service's own http object and every thread's kept connections."""
        self._service.close()
        with self._lock:
            kept, self._https = list(self._https), set()
        for h in kept:
            h.close()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


# ---- the sending mailboxes (a pool of Gmail users) --------------------------------------------------------

_MAILBOX_ADDRESS = re.compile(r"^[^@\s<>\"]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


MAILBOXES_DESCRIPTION = (
    "The pool of sending mailboxes, a JSON list of {address, display_name?, daily_quota?, rate_per_s?, enabled?,"
    " token?, credentials_file?}; empty = the one mailbox ARREARS_GMAIL_SENDER. dispatcher-email writes to each"
    " account from one mailbox for good, responses reads replies from all of them (docs/dispatch.md"
    " 'Sending mailboxes')"
)


class GmailMailbox(BaseModel):
    """One sending mailbox of the pool (`ARREARS_GMAIL_MAILBOXES`, a JSON list of these).

    Credentials: `token` (a static bearer token: the emulator, short tests) or `credentials_file` (a service
    account with domain-wide delegation acting as `address`, or that user's authorized-user file); neither =
    the service's `ARREARS_GMAIL_TOKEN` / `ARREARS_GMAIL_CREDENTIALS_FILE`, which with a service account is
    how Workspace serves many mailboxes from one key (each client impersonates its own `address`).
    Secrets are `SecretStr`: never in reprs or logs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str = Field(description="The mailbox (From: and the Gmail userId)")
    display_name: str | None = Field(None, description="From: display name; None = the brand name")
    daily_quota: int = Field(
        2000, ge=1, description="Sends per rolling 24 hours (Workspace ~2000, consumer ~500)"
    )
    rate_per_s: float = Field(
        2.5, gt=0, description="Sends per second (250 quota units/s per user / 100 a send)"
    )
    enabled: bool = Field(
        True,
        description="False = draining: no new sends (its accounts are re-homed), still read for replies and"
        " still asked about its in-doubt sends",
    )
    token: SecretStr | None = Field(None, description="Static OAuth bearer token of this mailbox")
    credentials_file: str | None = Field(
        None, description="Google credentials JSON of this mailbox (service account or authorized user)"
    )

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        v = v.strip()
        if not _MAILBOX_ADDRESS.match(v):
            raise ValueError("not a mailbox address")
        return v.lower()

    @property
    def limiter_name(self) -> str:
        """The mailbox's row in the shared limiter and route pauses (the same name a single-mailbox
        dispatcher has always used, so its pause and pacing carry over into a pool)."""
        return f"gmail:{self.address}"


def mailbox_client(
    mailbox: GmailMailbox,
    *,
    api_endpoint: str | None,
    timeout_s: float,
    default_token: SecretStr | None = None,
    default_credentials_file: str | None = None,
    max_workers: int | None = None,
) -> GmailClient:
    """A client acting as `mailbox` (userId = its address): its own credentials, else the service's."""
    common: dict[str, Any] = {
        "api_endpoint": api_endpoint,
        "timeout_s": timeout_s,
        "user_id": mailbox.address,
        "max_workers": max_workers,
    }
    token = mailbox.token or (None if mailbox.credentials_file else default_token)
    if token is not None:
        return GmailClient.from_user_token(token=token.get_secret_value(), **common)
    path = mailbox.credentials_file or default_credentials_file
    if path:
        with open(path) as f:
            info = json.load(f)
        if info.get("type") == "service_account":
            return GmailClient.from_service_account_file(path, subject=mailbox.address, **common)
        return GmailClient.from_user_token(
            token=info.get("token"),
            refresh_token=info.get("refresh_token"),
            client_id=info.get("client_id"),
            client_secret=info.get("client_secret"),
            **common,
        )
    raise ValueError(f"no Gmail credentials for mailbox {mailbox.address}: set its token or credentials_file")
