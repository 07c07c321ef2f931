"""Calls to the owning services' APIs on behalf of the signed-in person.

The console never changes another service's state itself: a button press becomes a call to the service
that owns the state, carrying the person's own credential, so the owning service authorises it and writes
its audit entry with the person as the actor. A console session is a platform credential (it lives in the
shared `iam` schema), so the session cookie and its CSRF token are forwarded as they are; a caller using an
API key or a bearer token has that forwarded instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from arrears_shared import channels, paging
from arrears_shared.auth import Principal
from arrears_shared.auth.sessions import COOKIE
from arrears_shared.request_context import REQUEST_ID
from fastapi import Request

from ..settings import ConsoleSettings


class UpstreamError(Exception):
    def __init__(self, service: str, status: int, detail: str, payload: Any = None) -> None:
        super().__init__(f"{service}: {status} {detail}")
        self.service, self.status, self.detail = service, status, detail
        self.payload = payload  # the response's `detail` as sent (e.g. a 422's list of errors), if JSON


def registered_dispatchers() -> list[str]:
    """The dispatcher service of every registered channel, in registry order."""
    return list(dict.fromkeys(spec.dispatcher for spec in channels.registered().values()))


@dataclass
class Upstreams:
    urls: dict[str, str]
    http: httpx.AsyncClient

    @classmethod
    def from_settings(cls, s: ConsoleSettings) -> Upstreams:
        urls = {
            "segmenter": s.console_segmenter_url,
            "escalation": s.console_escalation_url,
            "ingest": s.console_ingest_url,
            "responses": s.console_responses_url,
        }
        for d in registered_dispatchers():
            urls[d] = s.console_dispatcher_urls.get(d, f"http://{d}:8080")
        return cls(
            {k: v.rstrip("/") for k, v in urls.items()},
            httpx.AsyncClient(timeout=s.console_upstream_timeout_s),
        )

    @staticmethod
    def credentials(request: Request, who: Principal) -> dict[str, str]:
        headers = {"x-request-id": REQUEST_ID.get() or ""}
        token = request.cookies.get(COOKIE)
        if who.kind == "session" and token:
            headers["cookie"] = f"{COOKIE}={token}"
            headers["x-csrf-token"] = who.csrf_token or ""
        elif "authorization" in request.headers:
            headers["authorization"] = request.headers["authorization"]
        elif "x-api-key" in request.headers:
            headers["x-api-key"] = request.headers["x-api-key"]
        return headers

    async def call(
        self,
        request: Request,
        who: Principal,
        service: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        content: bytes | str | None = None,
        content_type: str | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        r = await self._send(
            request, who, service, method, path, json, params, content, content_type, timeout_s
        )
        return (
            r.json()
            if r.content and r.headers.get("content-type", "").startswith("application/json")
            else None
        )

    async def fetch(
        self, request: Request, who: Principal, service: str, path: str, params: dict[str, Any] | None = None
    ) -> httpx.Response:
        """A GET whose body is not JSON (a file download), as the signed-in person."""
        return await self._send(request, who, service, "GET", path, None, params, None, None, None)

    async def walk(
        self,
        request: Request,
        who: Principal,
        service: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        at_most: int = 2000,
        page_size: int = 200,
    ) -> tuple[list[Any], bool]:
        """Every row of a paged list (following its `X-Next-Cursor`), up to `at_most`; the flag says that
        more rows exist than were read, for the page to show it."""
        rows: list[Any] = []
        query = dict(params or {})
        while True:
            query["limit"] = min(page_size, at_most - len(rows))
            r = await self._send(request, who, service, "GET", path, None, query, None, None, None)
            rows += r.json()
            cursor = r.headers.get(paging.NEXT_CURSOR_HEADER)
            if cursor is None:
                return rows, False
            if len(rows) >= at_most:
                return rows, True
            query["cursor"] = cursor

    async def _send(
        self,
        request: Request,
        who: Principal,
        service: str,
        method: str,
        path: str,
        json: Any,
        params: dict[str, Any] | None,
        content: bytes | str | None,
        content_type: str | None,
        timeout_s: float | None,
    ) -> httpx.Response:
        headers = self.credentials(request, who)
        if content_type:
            headers["content-type"] = content_type
        extra: dict[str, Any] = {} if timeout_s is None else {"timeout": timeout_s}  # else: the client's
        try:
            r = await self.http.request(
                method,
                self.urls[service] + path,
                json=json,
                params=params,
                content=content,
                headers=headers,
                **extra,
            )
        except httpx.HTTPError as e:
            raise UpstreamError(service, 503, f"{service} is unreachable ({type(e).__name__})") from e
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise UpstreamError(
                service, r.status_code, detail if isinstance(detail, str) else str(detail), payload=detail
            )
        return r

    async def close(self) -> None:
        await self.http.aclose()
