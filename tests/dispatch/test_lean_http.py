"""The lean httpx transport of the provider clients: keep-alive reuse, the body framings a server may use, and
the failure modes the dispatcher classifies (nothing sent / in doubt) surfacing as the usual httpx errors."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from arrears_shared.providers.lean_http import LeanTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return head, body


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self.server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Server]]]:
    servers: list[Server] = []

    async def start(handler: Handler) -> Server:
        s = Server(handler)
        s.server = await asyncio.start_server(s._serve, "127.0.0.1", 0)
        servers.append(s)
        return s

    yield start
    for s in servers:
        assert s.server is not None
        s.server.close()


def json_answers(server_requests: list[tuple[bytes, bytes]]) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            req = await read_request(reader)
            assert req is not None
            server_requests.append(req)
            body = b'{"ok": %d}' % len(server_requests)
            writer.write(
                b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()

    return handler


async def test_keep_alive_reuses_one_connection_and_sends_the_body(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    got: list[tuple[bytes, bytes]] = []
    srv = await serve(json_answers(got))
    async with httpx.AsyncClient(base_url=srv.url, transport=LeanTransport()) as c:
        for i in range(5):
            r = await c.post("/v1/messages", json={"n": i}, headers={"Authorization": "k"})
            assert r.status_code == 202 and r.json() == {"ok": i + 1}
            assert r.http_version == "HTTP/1.1" and r.reason_phrase == "Accepted"
    assert srv.connections == 1
    head, body = got[0]
    assert head.startswith(b"POST /v1/messages HTTP/1.1\r\n")
    assert b"\r\nAuthorization: k\r\n" in head and b"\r\nHost: 127.0.0.1:" in head
    assert body == b'{"n":0}'


async def test_concurrent_requests_open_at_most_max_connections(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    got: list[tuple[bytes, bytes]] = []
    srv = await serve(json_answers(got))
    async with httpx.AsyncClient(base_url=srv.url, transport=LeanTransport(max_connections=3)) as c:
        rs = await asyncio.gather(*(c.get("/x", params={"i": i}) for i in range(30)))
    assert all(r.status_code == 202 for r in rs)
    assert srv.connections <= 3 and len(got) == 30


async def test_chunked_and_read_until_close_bodies(serve: Callable[[Handler], Awaitable[Server]]) -> None:
    async def chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nhell\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"1;ext=1\r\no\r\n0\r\nX-Trailer: y\r\n\r\n")
        await read_request(reader)  # the connection is reused
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        await writer.drain()
        await reader.read()

    srv = await serve(chunked)
    async with httpx.AsyncClient(base_url=srv.url, transport=LeanTransport()) as c:
        assert (await c.get("/")).text == "hello"
        assert (await c.get("/")).content == b""
    assert srv.connections == 1

    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nall of it")
        await writer.drain()

    srv = await serve(until_close)
    async with httpx.AsyncClient(base_url=srv.url, transport=LeanTransport()) as c:
        assert (await c.get("/")).text == "all of it"
        assert (await c.get("/")).text == "all of it"  # a new connection: that one was closed
    assert srv.connections == 2


async def test_connection_close_header_is_honoured(serve: Callable[[Handler], Awaitable[Server]]) -> None:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    srv = await serve(closing)
    async with httpx.AsyncClient(base_url=srv.url, transport=LeanTransport()) as c:
        for _ in range(3):
            assert (await c.get("/")).text == "ok"
    assert srv.connections == 3


async def test_failures_map_to_httpx_errors(serve: Callable[[Handler], Awaitable[Server]]) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # read the request, then close without an answer

    async def half_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        await reader.read()

    cases: list[tuple[Handler, type[Exception]]] = [
        (hang_up, httpx.RemoteProtocolError),
        (half_body, httpx.RemoteProtocolError),
        (silent, httpx.ReadTimeout),
        (garbage, httpx.RemoteProtocolError),
    ]
    for handler, error in cases:
        srv = await serve(handler)
        async with httpx.AsyncClient(base_url=srv.url, transport=LeanTransport(), timeout=0.3) as c:
            with pytest.raises(error):
                await c.post("/v1/messages", json={})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    async with httpx.AsyncClient(transport=LeanTransport()) as c:
        with pytest.raises(httpx.ConnectError):
            await c.get(f"http://127.0.0.1:{port}/")


async def test_a_cancelled_request_does_not_poison_the_pool(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    async def slow_then_fast(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader) or (b"", b"")
            if b"slow" in head:
                await asyncio.sleep(0.5)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n" + (b"slow" if b"slow" in head else b"fast")
            )
            await writer.drain()

    srv = await serve(slow_then_fast)
    async with httpx.AsyncClient(base_url=srv.url, transport=LeanTransport(max_connections=1)) as c:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(c.get("/slow"), 0.1)
        # the cancelled exchange's connection is dropped, never handed the next request's answer
        assert (await c.get("/fast")).text == "fast"
    assert srv.connections == 2


async def test_a_full_pool_makes_room_from_idle_connections_to_other_origins(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    a = await serve(json_answers([]))
    b = await serve(json_answers([]))
    async with httpx.AsyncClient(transport=LeanTransport(max_connections=1), timeout=2) as c:
        assert (await c.get(f"{a.url}/")).status_code == 202
        assert (await c.get(f"{b.url}/")).status_code == 202  # no PoolTimeout: a's idle one was closed
        assert (await c.get(f"{a.url}/")).status_code == 202
    assert (a.connections, b.connections) == (2, 1)
