"""The production gspread client factory: real Google credentials, or a local Sheets emulator.

gspread builds every URL from the constant ``https://sheets.googleapis.com/v4/spreadsheets``. To talk to
an emulator (or any Sheets-compatible endpoint) we mount :class:`EndpointRewriteAdapter` on the client's
``requests`` session for that prefix: the adapter rewrites the URL of each prepared request before it is
sent. gspread itself is neither edited nor monkeypatched.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

import gspread
import requests
from google.auth.credentials import Credentials
from google.oauth2 import credentials as user_credentials
from google.oauth2 import service_account
from gspread.exceptions import APIError
from gspread.http_client import BackOffHTTPClient, HTTPClient
from requests.adapters import HTTPAdapter

SHEETS_SCOPES = ("https://www.googleapis.com/auth/spreadsheets",)
GOOGLE_SHEETS_ORIGIN = "https://sheets.googleapis.com"
DEFAULT_EMULATOR_TOKEN = "arrears-emulator"

__all__ = [
    "DEFAULT_EMULATOR_TOKEN",
    "SHEETS_SCOPES",
    "BoundedBackOffHTTPClient",
    "EndpointRewriteAdapter",
    "StaticTokenCredentials",
    "load_credentials",
    "open_sheets_client",
]


class StaticTokenCredentials(Credentials):
    """A bearer token that never expires and never refreshes — for emulators only.

    ``refresh`` is a no-op, so a 401 from the server is returned to gspread (as ``APIError``) after
    google-auth's bounded refresh-and-retry, instead of an attempt to reach Google's token endpoint.
    """

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def refresh(self, request: Any) -> None:
        return None

    @property
    def expired(self) -> bool:
        return False

    @property
    def valid(self) -> bool:
        return bool(self.token)


class EndpointRewriteAdapter(HTTPAdapter):
    """A requests transport adapter that sends ``https://sheets.googleapis.com/...`` to another base URL.

    ``target`` may carry a path prefix (``http://emu:8085/sheets``); it replaces the origin, keeping the
    request's path and query. Mounted on the session for the Google origin only, so other URLs (Drive,
    OAuth) are untouched.
    """

    def __init__(self, target: str, origin: str = GOOGLE_SHEETS_ORIGIN, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target.rstrip("/")
        self.origin = origin.rstrip("/")

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        url = request.url or ""
        if url.startswith(self.origin):
            request.url = self.target + url[len(self.origin) :]
        return super().send(request, **kwargs)


class BoundedBackOffHTTPClient(BackOffHTTPClient):
    """gspread's ``BackOffHTTPClient`` with a bounded, iterative retry loop.

    gspread 6.2's own loop never gives up (its ``wait <= _MAX_BACKOFF`` guard compares a value already
    clamped to that maximum; fixed upstream in burnash/gspread#1599) and recurses once per retry. This
    subclass keeps its retry policy — 408, 429 and 5xx, plus Drive's 403 ``usageLimits`` — but:

    * retries at most ``max_retries`` times, then raises the last ``APIError``;
    * sleeps ``min(initial * 2**attempt, max) * U(0.5, 1)`` (exponential backoff with jitter), or the
      server's ``Retry-After`` when it sends one (the real Sheets API does not; our emulator can);
    * does not retry transport errors (timeouts, refused connections): a timed-out write may have been
      applied, so that decision belongs to the caller.

    **429 is a quota, not an error.** The Sheets API quotas are per minute and refill every minute
    (https://developers.google.com/workspace/sheets/api/limits: "quotas are refilled every minute"; on 429
    "use a truncated exponential backoff"). A 429 therefore does not spend ``max_retries``: it is waited out
    with backoff up to ``quota_backoff_max_s`` (longer than a minute) for at most ``quota_wait_max_s`` in
    total per request, then the last ``APIError`` is raised. ``on_quota_wait(seconds)`` is called before each
    such wait, so the caller can mark the run degraded while it waits.

    Settings are class attributes so that gspread, which instantiates the class itself, picks them up;
    :func:`open_sheets_client` sets them per instance.
    """

    max_retries: int = 6
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 64.0
    quota_wait_max_s: float = 300.0
    quota_backoff_max_s: float = 65.0
    on_quota_wait: Callable[[float], None] | None = None
    sleep: Callable[[float], None] = staticmethod(time.sleep)

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        attempt = 0  # retries of other errors (408, 5xx)
        quota_attempt = 0
        quota_waited = 0.0
        while True:
            try:
                return HTTPClient.request(self, *args, **kwargs)
            except APIError as err:
                if not self._retryable(err):
                    raise
                if err.code == HTTPStatus.TOO_MANY_REQUESTS:
                    delay = self._retry_after(err.response, self.quota_backoff_max_s)
                    if delay is None:
                        backoff = min(self.initial_backoff_s * (2**quota_attempt), self.quota_backoff_max_s)
                        delay = backoff * random.uniform(0.5, 1.0)
                    if quota_waited + delay > self.quota_wait_max_s:
                        raise
                    quota_attempt += 1
                    quota_waited += delay
                    if self.on_quota_wait is not None:
                        self.on_quota_wait(delay)
                    self.sleep(delay)
                    continue
                if attempt >= self.max_retries:
                    raise
                delay = self._retry_after(err.response, self.max_backoff_s)
                if delay is None:
                    backoff = min(self.initial_backoff_s * (2**attempt), self.max_backoff_s)
                    delay = backoff * random.uniform(0.5, 1.0)
                attempt += 1
                self.sleep(delay)

    @staticmethod
    def _retryable(err: APIError) -> bool:
        code = err.code
        if code in (HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS) or code >= 500:
            return True
        errors = err.error.get("errors") if isinstance(err.error, Mapping) else None
        return bool(code == HTTPStatus.FORBIDDEN and errors and errors[0].get("domain") == "usageLimits")

    def _retry_after(self, response: requests.Response, cap: float) -> float | None:
        value = response.headers.get("Retry-After")
        if not value:
            return None
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                return None
        return max(0.0, min(seconds, cap))


def load_credentials(
    credentials_file: str | None = None, credentials_info: Mapping[str, Any] | None = None
) -> Credentials:
    """Build Google credentials with the spreadsheets scope from a JSON key file or its parsed content.

    Accepts a service-account key (``"type": "service_account"``) or an authorized-user OAuth file
    (``"type": "authorized_user"``, as written by ``gcloud auth application-default login`` or an OAuth
    consent flow, with ``client_id``, ``client_secret`` and ``refresh_token``).

    Raises:
        ValueError: neither or both sources given; the file is not JSON; unknown or missing ``type``;
            required keys missing (google-auth raises ``ValueError``/``MalformedError``, a subclass).
        OSError: the file cannot be read (``FileNotFoundError``, ``PermissionError``).

    No network call is made here; an invalid or revoked key surfaces on the first API call as
    ``google.auth.exceptions.RefreshError``.
    """
    if (credentials_file is None) == (credentials_info is None):
        raise ValueError("give exactly one of credentials_file or credentials_info")
    if credentials_file is not None:
        text = Path(credentials_file).expanduser().read_text(encoding="utf-8")
        try:
            info: Mapping[str, Any] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"credentials file {credentials_file} is not JSON: {exc}") from exc
    else:
        assert credentials_info is not None
        info = credentials_info
    if not isinstance(info, Mapping):
        raise ValueError("credentials JSON must be an object")
    kind = info.get("type")
    if kind == "service_account":
        return service_account.Credentials.from_service_account_info(dict(info), scopes=list(SHEETS_SCOPES))
    if kind == "authorized_user":
        return user_credentials.Credentials.from_authorized_user_info(dict(info), scopes=list(SHEETS_SCOPES))
    raise ValueError(
        f"unsupported credentials type {kind!r}; expected 'service_account' or 'authorized_user'"
    )


def open_sheets_client(
    *,
    api_endpoint: str | None,
    credentials_file: str | None,
    credentials_info: dict[str, Any] | None = None,
    timeout_s: float = 30,
    backoff: bool = False,
    max_retries: int = 6,
    initial_backoff_s: float = 1.0,
    max_backoff_s: float = 64.0,
    quota_wait_max_s: float = 300.0,
    on_quota_wait: Callable[[float], None] | None = None,
    emulator_token: str = DEFAULT_EMULATOR_TOKEN,
) -> gspread.Client:
    """Return a gspread client for Google Sheets or for a Sheets-compatible endpoint (the emulator).

    * ``api_endpoint`` None: talk to ``https://sheets.googleapis.com`` with real credentials from
      ``credentials_file`` or ``credentials_info`` (see :func:`load_credentials`).
    * ``api_endpoint`` set (``http://127.0.0.1:8085``): requests to the Google origin are rewritten to it
      by a transport adapter. With no credentials a :class:`StaticTokenCredentials` bearer
      ``emulator_token`` is used (the emulator takes it as the user identity for per-user quotas); with
      credentials they are used as given (a proxy in front of Google, for example).
    * ``backoff``: use :class:`BoundedBackOffHTTPClient` (gspread's ``BackOffHTTPClient`` with bounded
      retries) so 408/429/5xx answers are retried with exponential backoff; otherwise gspread's plain
      ``HTTPClient`` raises ``gspread.exceptions.APIError`` on the first such answer.
    * ``timeout_s``: per-request (connect and read) timeout; ``requests.exceptions.Timeout`` /
      ``ConnectionError`` propagate to the caller and are never retried here.

    Raises:
        ValueError: no endpoint and no credentials; or bad credentials content (see ``load_credentials``).
        OSError: the credentials file cannot be read.

    The client is created lazily: nothing is sent until the first call (``open_by_key`` ...), which may
    raise ``gspread.exceptions.APIError`` (HTTP errors; 404 becomes ``SpreadsheetNotFound``),
    ``google.auth.exceptions.RefreshError`` (real credentials rejected) or ``requests`` transport errors.
    """
    has_credentials = credentials_file is not None or credentials_info is not None
    if api_endpoint is None and not has_credentials:
        raise ValueError(
            "Google Sheets needs credentials_file or credentials_info (or an api_endpoint emulator)"
        )
    creds: Credentials
    if has_credentials:
        creds = load_credentials(credentials_file, credentials_info)
    else:
        creds = StaticTokenCredentials(emulator_token)

    http_client: type[HTTPClient] = BoundedBackOffHTTPClient if backoff else HTTPClient
    client = gspread.Client(auth=creds, http_client=http_client)
    if isinstance(client.http_client, BoundedBackOffHTTPClient):
        client.http_client.max_retries = max_retries
        client.http_client.initial_backoff_s = initial_backoff_s
        client.http_client.max_backoff_s = max_backoff_s
        client.http_client.quota_wait_max_s = quota_wait_max_s
        client.http_client.on_quota_wait = on_quota_wait
    if api_endpoint is not None:
        client.http_client.session.mount(GOOGLE_SHEETS_ORIGIN + "/", EndpointRewriteAdapter(api_endpoint))
    client.set_timeout(timeout_s)
    return client
