"""A lean HTTP/1.1 keep-alive transport for httpx, on plain asyncio protocols.

httpx's default transport (httpcore over anyio) costs about 0.5 ms of CPU per request: two socket writes
(head, then body), a cancel scope per read and write, and a readability syscall on every pooled connection
it considers. A dispatcher making hundreds of provider calls a second spends more CPU there than on its own
work. This transport keeps the httpx API (`httpx.AsyncClient(transport=LeanTransport())`, the same
`httpx` exceptions, timeouts from the client) and does per request: one write, one parse of the answer
as it arrives, no extra tasks.

Scope: what a JSON REST client needs. HTTP/1.1 only, one request at a time per connection (no
pipelining), bodies by Content-Length, chunked transfer coding or connection close; TLS through the
`ssl` module; no proxies (use httpx's default transport behind a proxy). A connection is reused only when
the previous exchange ended cleanly; an idle connection is dropped before the usual 5 s server keep-alive
timeout, so a request is not written into a connection the server is closing. Nothing is ever resent: a
connection lost after the request was written raises `httpx.RemoteProtocolError` / `httpx.ReadError`
(for a non-idempotent call, an in-doubt outcome the caller must reconcile).

Errors: `httpx.ConnectError` / `httpx.ConnectTimeout` (nothing was sent), `httpx.PoolTimeout`,
`httpx.ReadTimeout`, `httpx.WriteError`, `httpx.ReadError`, `httpx.RemoteProtocolError`.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from typing import Any

import httpx

_MAX_HEAD = 64 * 1024


def default_ssl_context() -> ssl.SSLContext:
    try:
        import certifi  # httpx's own trust store

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:  # pragma: no cover - certifi comes with httpx
        return ssl.create_default_context()


class _Answer:
    __slots__ = ("status", "reason", "headers", "body", "keep_alive")

    def __init__(
        self, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], body: bytes, keep_alive: bool
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; at most one exchange at a time."""

    def __init__(self, origin: tuple[str, str, int]) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[_Answer] | None = None
        self.head_only = False
        self.eof = False
        self.lost = False
        self.reusable = True
        self.idle_since = time.monotonic()
        # parse state of the answer being received
        self._head: tuple[int, bytes, list[tuple[bytes, bytes]]] | None = None
        self._chunks: list[bytes] = []

    # -- asyncio.Protocol --------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self.reusable = False  # bytes nobody asked for: do not trust this connection again
            return
        self.buf += data
        self._parse()

    def eof_received(self) -> bool:
        self.eof = True
        self.reusable = False
        if self.waiter is not None:
            self._parse()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.reusable = False
        w = self.waiter
        if w is not None and not w.done():
            if self._head is None and not self.buf:
                w.set_exception(httpx.RemoteProtocolError("Server disconnected without sending a response."))
            else:
                w.set_exception(httpx.ReadError(f"connection lost while reading the response: {exc!r}"))

    # -- exchange ----------------------------------------------------------------------------------------
    def usable(self, now: float, expiry_s: float) -> bool:
        t = self.transport
        return (
            self.reusable
            and not self.lost
            and not self.eof
            and t is not None
            and not t.is_closing()
            and now - self.idle_since < expiry_s
        )

    def start(self, data: bytes, head_only: bool) -> asyncio.Future[_Answer]:
        assert self.transport is not None
        self.buf.clear()
        self._head = None
        self._chunks = []
        self.head_only = head_only
        self.waiter = asyncio.get_running_loop().create_future()
        try:
            self.transport.write(data)
        except (OSError, RuntimeError) as e:
            self.reusable = False
            raise httpx.WriteError(str(e)) from e
        return self.waiter

    def finish(self) -> None:
        self.waiter = None
        self.idle_since = time.monotonic()

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def _fail(self, message: str) -> None:
        self.reusable = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(httpx.RemoteProtocolError(message))

    def _parse(self) -> None:
        w = self.waiter
        if w is None or w.done():
            return
        buf = self.buf
        while self._head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > _MAX_HEAD:
                    self._fail("response head too large")
                elif self.eof:
                    self._fail("Server disconnected without sending a complete response head.")
                return
            lines = bytes(buf[:end]).split(b"\r\n")
            del buf[: end + 4]
            parts = lines[0].split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                self._fail(f"malformed status line {lines[0][:80]!r}")
                return
            status = int(parts[1])
            headers: list[tuple[bytes, bytes]] = []
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if not sep or not name or name != name.strip():
                    self._fail(f"malformed header line {line[:80]!r}")
                    return
                headers.append((name, value.strip()))
            if 100 <= status < 200 and status != 101:
                continue  # interim answer (100 Continue, 103 Early Hints): the real one follows
            if parts[0] != b"HTTP/1.1":
                self.reusable = False
            self._head = (status, parts[2] if len(parts) > 2 else b"", headers)
        status, reason, headers = self._head
        length: int | None = None
        chunked = False
        for name, value in headers:
            lname = name.lower()
            if lname == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    self._fail("invalid Content-Length")
                    return
            elif lname == b"transfer-encoding":
                chunked = value.lower().endswith(b"chunked")
            elif lname == b"connection" and b"close" in value.lower():
                self.reusable = False
        if self.head_only or status in (204, 304):
            body = b""
        elif chunked:
            got = self._dechunk()
            if got is None:
                return
            body = got
        elif length is not None:
            if len(buf) < length:
                if self.eof:
                    self._fail("Server disconnected before the whole body arrived.")
                return
            body = bytes(buf[:length])
            del buf[:length]
        else:
            if not self.eof:
                return  # the body runs until the server closes the connection
            body = bytes(buf)
            buf.clear()
            self.reusable = False
        if buf:
            self.reusable = False  # bytes beyond the answer: do not trust this connection again
        w.set_result(_Answer(status, reason, headers, body, self.reusable))

    def _dechunk(self) -> bytes | None:
        """Consume complete chunks from the buffer; the whole body once the last chunk and trailers are in."""
        buf = self.buf
        while True:
            eol = buf.find(b"\r\n")
            if eol < 0:
                break
            size_text = bytes(buf[:eol]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                self._fail("malformed chunk size")
                return None
            if size == 0:
                end = buf.find(b"\r\n\r\n", eol)
                if eol + 2 <= len(buf) and buf[eol + 2 : eol + 4] == b"\r\n":
                    del buf[: eol + 4]
                    return b"".join(self._chunks)
                if end < 0:
                    break  # trailers not complete yet
                del buf[: end + 4]
                return b"".join(self._chunks)
            if len(buf) < eol + 2 + size + 2:
                break
            self._chunks.append(bytes(buf[eol + 2 : eol + 2 + size]))
            del buf[: eol + 2 + size + 2]
        if self.eof:
            self._fail("Server disconnected inside a chunked body.")
        return None


class LeanTransport(httpx.AsyncBaseTransport):
    """See the module docstring. `max_connections` is per transport (all origins)."""

    def __init__(
        self,
        *,
        max_connections: int = 32,
        keepalive_expiry_s: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max = max(1, max_connections)
        self._expiry = keepalive_expiry_s
        self._ssl = ssl_context
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._all: set[_Connection] = set()
        self._closed = False

    # -- pool ------------------------------------------------------------------------------------------
    async def _acquire(self, origin: tuple[str, str, int], timeouts: dict[str, Any]) -> _Connection:
        if self._closed:
            raise RuntimeError("the transport is closed")
        now = time.monotonic()
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.usable(now, self._expiry):
                return conn
            self._discard(conn)
        while self._open >= self._max:
            spare = next((c for conns in self._idle.values() for c in conns), None)
            if spare is not None:  # an idle connection to another origin: close it to make room
                self._idle[spare.origin].remove(spare)
                self._discard(spare)
                continue
            await self._wait_for_slot(timeouts.get("pool"))
            idle = self._idle.get(origin)
            while idle:
                conn = idle.pop()
                if conn.usable(time.monotonic(), self._expiry):
                    return conn
                self._discard(conn)
        self._open += 1
        try:
            conn = await self._connect(origin, timeouts.get("connect"))
        except BaseException:
            self._open -= 1
            self._wake_one()
            raise
        self._all.add(conn)
        return conn

    async def _wait_for_slot(self, limit_s: float | None) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        try:
            await asyncio.wait_for(fut, limit_s)
        except TimeoutError as e:
            raise httpx.PoolTimeout("no connection free in the pool in time") from e
        finally:
            if fut in self._waiting:
                self._waiting.remove(fut)

    def _wake_one(self) -> None:
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        if conn in self._all:
            self._all.discard(conn)
            self._open -= 1
            self._wake_one()

    def _release(self, conn: _Connection, reuse: bool) -> None:
        conn.finish()
        if reuse and not self._closed and conn.usable(time.monotonic(), self._expiry):
            self._idle.setdefault(conn.origin, []).append(conn)
            self._wake_one()
        else:
            self._discard(conn)

    async def _connect(self, origin: tuple[str, str, int], limit_s: float | None) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        ctx: ssl.SSLContext | None = None
        if scheme == "https":
            if self._ssl is None:
                self._ssl = default_ssl_context()
            ctx = self._ssl
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(origin),
                    host,
                    port,
                    ssl=ctx,
                    server_hostname=host if ctx is not None else None,
                ),
                limit_s,
            )
        except TimeoutError as e:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from e
        except (OSError, ssl.SSLError) as e:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {e}") from e
        return proto

    # -- httpx -----------------------------------------------------------------------------------------
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}")
        port = url.port or (443 if scheme == "https" else 80)
        origin = (scheme, url.host, port)
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        body = await request.aread()
        head = [request.method.encode(), b" ", url.raw_path, b" HTTP/1.1\r\n"]
        for name, value in request.headers.raw:
            if name.lower() in (b"transfer-encoding", b"content-length"):
                continue  # the body is sent whole, with its length
            head += (name, b": ", value, b"\r\n")
        if body or request.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            head += (b"Content-Length: ", str(len(body)).encode(), b"\r\n")
        head.append(b"\r\n")
        data = b"".join(head) + body
        conn = await self._acquire(origin, timeouts)
        reuse = False
        try:
            fut = conn.start(data, head_only=request.method == "HEAD")
            read_timeout = timeouts.get("read")
            timer = (
                asyncio.get_running_loop().call_later(read_timeout, _time_out, fut)
                if read_timeout is not None
                else None
            )
            try:
                answer = await fut
            finally:
                if timer is not None:
                    timer.cancel()
            reuse = answer.keep_alive
        finally:
            self._release(conn, reuse)
        return httpx.Response(
            answer.status,
            headers=answer.headers,
            stream=httpx.ByteStream(answer.body),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": answer.reason},
            request=request,
        )

    async def aclose(self) -> None:
        self._closed = True
        for conn in list(self._all):
            self._discard(conn)
        self._idle.clear()


def _time_out(fut: asyncio.Future[_Answer]) -> None:
    if not fut.done():
        fut.set_exception(httpx.ReadTimeout("timed out waiting for the response"))
