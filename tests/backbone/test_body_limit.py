"""`BodySizeLimit`: declared and streamed bodies over the cap get a 413 and never reach the app as a
truncated body; per-prefix overrides; non-HTTP scopes pass through. In-process (httpx ASGITransport) and
through a real uvicorn server on a free port (chunked uploads, a client that keeps sending)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import uvicorn
from arrears_shared.body_limit import BodySizeLimit
from fastapi import FastAPI, Request
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

CAP = 1_000
BIG_CAP = 100_000


class Payload(BaseModel):
    text: str


class Seen:
    """What the app saw: bodies it processed, disconnects it noticed."""

    def __init__(self) -> None:
        self.processed: list[int] = []
        self.disconnects = 0


def make_app(seen: Seen) -> BodySizeLimit:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        try:
            body = await request.body()
        except ClientDisconnect:
            seen.disconnects += 1
            raise
        seen.processed.append(len(body))
        return {"size": len(body)}

    @app.post("/json")
    async def json_body(p: Payload) -> dict[str, int]:
        seen.processed.append(len(p.text))
        return {"size": len(p.text)}

    @app.post("/uploads/{name}")
    async def upload(name: str, request: Request) -> dict[str, int]:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        seen.processed.append(size)
        return {"size": size}

    @app.post("/uploads-other")
    async def other(request: Request) -> dict[str, int]:
        body = await request.body()
        seen.processed.append(len(body))
        return {"size": len(body)}

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        return {"ok": "yes"}

    return BodySizeLimit(app, max_bytes=CAP, overrides={"/uploads": BIG_CAP})


async def chunks(total: int, size: int = 256) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"x" * n


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
async def client(seen: Seen) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(seen))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


# -- in-process --------------------------------------------------------------------------------------------


async def test_bodies_within_the_cap_are_untouched(client: httpx.AsyncClient, seen: Seen) -> None:
    r = await client.post("/echo", content=b"a" * CAP)
    assert (r.status_code, r.json()) == (200, {"size": CAP})
    r = await client.post("/echo", content=chunks(CAP))  # chunked, exactly at the cap
    assert (r.status_code, r.json()) == (200, {"size": CAP})
    assert (await client.get("/ping")).json() == {"ok": "yes"}
    assert seen.processed == [CAP, CAP]


async def test_declared_length_over_the_cap_is_refused_before_the_app(
    client: httpx.AsyncClient, seen: Seen
) -> None:
    r = await client.post("/echo", content=b"a" * (CAP + 1))
    assert r.status_code == 413
    assert r.json() == {"detail": f"request body exceeds {CAP} bytes"}
    r = await client.post("/json", json={"text": "y" * 5_000})
    assert r.status_code == 413
    assert seen.processed == [] and seen.disconnects == 0  # the app never ran


async def test_streamed_body_over_the_cap_is_refused_and_never_processed(
    client: httpx.AsyncClient, seen: Seen
) -> None:
    r = await client.post("/echo", content=chunks(CAP * 5))
    assert r.status_code == 413
    assert r.json() == {"detail": f"request body exceeds {CAP} bytes"}
    assert seen.processed == [] and seen.disconnects == 1  # it saw the client go, not a truncated body


async def test_lying_content_length_is_still_counted(seen: Seen) -> None:
    """A declared length under the cap does not exempt the body from counting."""
    app = make_app(seen)
    messages = [
        {"type": "http.request", "body": b"z" * 600, "more_body": True},
        {"type": "http.request", "body": b"z" * 600, "more_body": False},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/echo",
        "raw_path": b"/echo",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"t"), (b"content-length", b"10")],
        "server": ("t", 80),
        "client": ("127.0.0.1", 1),
    }
    await app(scope, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 413 and seen.processed == []


async def test_overrides_match_whole_path_segments(client: httpx.AsyncClient, seen: Seen) -> None:
    r = await client.post("/uploads/a.csv", content=chunks(BIG_CAP))
    assert (r.status_code, r.json()) == (200, {"size": BIG_CAP})
    r = await client.post("/uploads/a.csv", content=b"u" * (BIG_CAP + 1))
    assert r.status_code == 413 and r.json()["detail"] == f"request body exceeds {BIG_CAP} bytes"
    r = await client.post("/uploads/a.csv", content=chunks(BIG_CAP + 1))
    assert r.status_code == 413
    # a sibling path sharing the prefix text is not covered by the override
    r = await client.post("/uploads-other", content=b"u" * (CAP + 1))
    assert r.status_code == 413 and r.json()["detail"] == f"request body exceeds {CAP} bytes"
    assert seen.processed == [BIG_CAP]


def test_limit_for_longest_prefix_wins() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - never called
        pass

    m = BodySizeLimit(app, 10, overrides={"/a/": 20, "/a/b": 30})
    assert (m.limit_for("/a"), m.limit_for("/a/x"), m.limit_for("/a/b/c"), m.limit_for("/ab")) == (
        20,
        20,
        30,
        10,
    )
    with pytest.raises(ValueError):
        BodySizeLimit(app, 10, overrides={"a": 1})


@pytest.mark.parametrize("scope_type", ["websocket", "lifespan"])
async def test_non_http_scopes_pass_through(scope_type: str) -> None:
    calls: list[tuple[Any, Any, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append((scope, receive, send))

    async def receive() -> dict[str, Any]:  # pragma: no cover - never called
        return {}

    async def send(message: Any) -> None:  # pragma: no cover - never called
        pass

    scope = {"type": scope_type, "path": "/echo", "headers": [(b"content-length", b"999999")]}
    await BodySizeLimit(app, 0)(scope, receive, send)
    assert calls == [(scope, receive, send)]  # the very same callables, unwrapped


# -- through a real uvicorn server -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def server_url(seen: Seen) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(make_app(seen), host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_real_server_refuses_declared_and_streamed_bodies(server_url: str, seen: Seen) -> None:
    async with httpx.AsyncClient(base_url=server_url, timeout=10) as c:
        r = await c.post("/echo", content=b"a" * 10)
        assert (r.status_code, r.json()) == (200, {"size": 10})

        r = await c.post("/echo", content=b"a" * (CAP + 1))
        assert r.status_code == 413 and r.json() == {"detail": f"request body exceeds {CAP} bytes"}

        # chunked transfer encoding, no Content-Length: counted as it arrives
        r = await c.post("/echo", content=chunks(CAP * 4))
        assert r.status_code == 413 and r.json() == {"detail": f"request body exceeds {CAP} bytes"}

        r = await c.post("/uploads/f.xlsx", content=chunks(BIG_CAP, size=8192))
        assert (r.status_code, r.json()) == (200, {"size": BIG_CAP})

    assert seen.processed == [10, BIG_CAP]
    assert seen.disconnects == 1


async def test_real_server_answers_413_while_the_client_keeps_sending(server_url: str, seen: Seen) -> None:
    """A client streaming far past the cap (2 MiB against 100 kB) still gets the 413, not a reset."""
    async with httpx.AsyncClient(base_url=server_url, timeout=10) as c:
        r = await c.post("/uploads/big.csv", content=chunks(2 * 1024 * 1024, size=16_384))
        assert r.status_code == 413 and r.json() == {"detail": f"request body exceeds {BIG_CAP} bytes"}
        # a fresh connection works normally afterwards
        assert (await c.get("/ping")).status_code == 200
    assert seen.processed == []
