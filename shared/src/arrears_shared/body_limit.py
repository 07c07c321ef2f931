"""Request body size limit, as a pure ASGI middleware (no Starlette `BaseHTTPMiddleware`: it never buffers).

    app = BodySizeLimit(app, max_bytes=1_048_576, overrides={"/ingest/upload": 50_000_000})

Every HTTP request body is capped at `max_bytes`, or at the cap of the longest `overrides` prefix that
matches the request path. Prefixes match whole path segments: `"/ingest/upload"` covers `/ingest/upload`
and `/ingest/upload/...`, not `/ingest/uploads`. The path is the decoded ASGI `scope["path"]`, the one
routing sees.

* A declared `Content-Length` above the cap is answered `413` at once: the app is not called and nothing
  of the body is read (so no `100 Continue` is sent either).
* A body without a length (chunked) or with a wrong one is counted while the app reads it. The chunk that
  crosses the cap is never given to the app: from then on the app's `receive()` returns
  `http.disconnect`, so it sees the client gone (Starlette raises `ClientDisconnect`), never a truncated
  body it could process. Whatever it answers or raises after that is dropped and the client gets the 413,
  unless the app had already started its response (then the response is left to end as it does).

The 413 body is `{"detail": "request body exceeds N bytes"}`. It deliberately does not say
`Connection: close`: closing a socket with unread request data makes the kernel send a reset, which can
destroy the 413 before the client reads it. The server discards the rest of the body instead (uvicorn drops
request data that arrives after its response is complete; at most its 64 KiB read buffer is held), so the
client sees the 413 and the connection stays usable. WebSocket and lifespan scopes pass through untouched.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)


class BodySizeLimit:
    """Answer 413 to any HTTP request whose body exceeds the cap for its path (see the module doc)."""

    def __init__(self, app: ASGIApp, max_bytes: int, overrides: Mapping[str, int] | None = None) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.app = app
        self.max_bytes = max_bytes
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
            await _send_413(send, cap)
            return

        received = 0
        exceeded = False
        started = False  # the app's response started before the cap was crossed

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    exceeded = True
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
            await _send_413(send, cap)


def _content_length(scope: Scope) -> int | None:
    """The declared body length; None when absent or unparsable (then the body is counted as it is read)."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_413(send: Send, cap: int) -> None:
    body = json.dumps({"detail": f"request body exceeds {cap} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
