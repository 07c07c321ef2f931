"""Request body size limit, as a pure ASGI middleware (no Starlette `BaseHTTPMiddleware`: it never buffers).

    app = BodySizeLimit(app, max_bytes=1_048_576, overrides={"/ingest/upload": 50_000_000})

Every HTTP request body is capped at `max_bytes`, or at the cap of the longest `overrides` prefix that
matches the request path. Prefixes match whole path segments: `"/ingest/upload"` covers `/ingest/upload`
and `/ingest/upload/...`, not `/ingest/uploads`. The path is the decoded ASGI `scope["path"]`, the one
routing sees. It runs for every route, public webhooks included, before any signature check or JSON parse.

* A declared `Content-Length` above the cap is answered `413` at once: the app is not called and nothing
  of the body is given to it (no `100 Continue` is sent either).
* A body without a length (chunked) or with a wrong one is counted while the app reads it. The chunk that
  crosses the cap is never given to the app: from then on the app's `receive()` returns
  `http.disconnect`, so it sees the client gone (Starlette raises `ClientDisconnect`), never a truncated
  body it could process. Whatever it answers or raises after that is dropped and the client gets the 413,
  unless the app had already started its response (then the response is left to end as it does).

The 413 (`{"detail": "request body exceeds N bytes"}`, `Connection: close`) is written as soon as the cap is
crossed, so a client that reads while it sends (curl, Go, most webhook senders) sees it at once. The
connection is then closed after a bounded *drain*: the rest of the body is read and thrown away only while
it fits in `drain_bytes` (default 4 MiB) and `drain_s` (default 5 s). Why drain at all: closing a socket with
unread request data makes the kernel send a reset, which destroys the 413 for a client that reads its
answer only after it sent everything (httpx, requests); a body that ends within the drain budget therefore
gets a clean 413. Why bounded: without it the server (uvicorn discards data that arrives after a response)
would read a 50 MB body in full to throw it away. A declared length beyond cap + drain budget is not
drained at all: the connection closes right after the 413. WebSocket and lifespan scopes pass through.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

DRAIN_BYTES = 4 * 1024 * 1024
DRAIN_S = 5.0


class BodySizeLimit:
    """Answer 413 to any HTTP request whose body exceeds the cap for its path (see the module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        overrides: Mapping[str, int] | None = None,
        *,
        drain_bytes: int = DRAIN_BYTES,
        drain_s: float = DRAIN_S,
    ) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        if drain_bytes < 0 or drain_s < 0:
            raise ValueError("drain_bytes and drain_s must be >= 0")
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_bytes
        self.drain_s = drain_s
        prefixes: list[tuple[str, int]] = []
        for prefix, cap in (overrides or {}).items():
            if not prefix.startswith("/"):
                raise ValueError(f"override prefix {prefix!r} must start with '/'")
            if cap < 0:
                raise ValueError(f"override cap for {prefix!r} must be >= 0")
            prefixes.append((prefix.rstrip("/") or "/", cap))
        # longest prefix first: the most specific override wins
        self._overrides = sorted(prefixes, key=lambda pc: len(pc[0]), reverse=True)

    def limit_for(self, path: str) -> int:
        for prefix, cap in self._overrides:
            if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                return cap
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.limit_for(scope.get("path", ""))

        declared = _content_length(scope)
        if declared is not None and declared > cap:
            drain = self.drain_bytes if declared <= cap + self.drain_bytes else 0
            await self._refuse(receive, send, cap, drain)
            return

        received = 0
        exceeded = False
        ended = False  # the client sent its last chunk (more_body false) before the cap was crossed
        started = False  # the app's response started before the cap was crossed

        async def limited_receive() -> Message:
            nonlocal received, exceeded, ended
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    exceeded = True
                    ended = not message.get("more_body", False)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the client gets our 413, not whatever the app answers to the disconnect
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded or started:
                raise
            log.debug("app raised after the request body exceeded %d bytes", cap, exc_info=True)
        if exceeded and not started:
            await self._refuse(receive, send, cap, 0 if ended else self.drain_bytes, ended=ended)

    async def _refuse(
        self, receive: Receive, send: Send, cap: int, drain: int, *, ended: bool = False
    ) -> None:
        """Write the 413 now, read and drop at most `drain` more bytes of the body, then end the response
        (the server closes the connection: `Connection: close`)."""
        body = json.dumps({"detail": f"request body exceeds {cap} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": not ended and drain > 0})
        if ended or drain == 0:
            return
        try:
            async with asyncio.timeout(self.drain_s):
                dropped = 0
                while dropped <= drain:
                    message = await receive()
                    if message["type"] != "http.request":
                        break
                    dropped += len(message.get("body", b""))
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            log.debug("gave up draining a refused body after %.1f s", self.drain_s)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _content_length(scope: Scope) -> int | None:
    """The declared body length; None when absent or unparsable (then the body is counted as it is read)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
