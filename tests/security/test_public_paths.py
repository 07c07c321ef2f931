"""Public (webhook) paths: bodies are capped while read, on a real uvicorn server serving the real responses
app; every signature-header parser is total (hypothesis over arbitrary strings); weird headers through the
ASGI app of responses and ingest get a 4xx, never a 500."""

from __future__ import annotations

import asyncio
import base64
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn
from arrears_dispatcher_whatsapp.webhooks import verify_signature
from arrears_ingest.payments.signatures import verify_stripe
from arrears_responses.__main__ import definition
from arrears_responses.settings import ResponsesSettings
from arrears_responses.webhooks.signatures import WebhookRejected, verify_quo_webhook
from arrears_shared.providers.quo_signature import InvalidSignature, verify_openphone_signature
from arrears_shared.providers.standard_webhooks import verify_standard_webhook
from arrears_shared.service import ServiceHost
from hypothesis import given, settings
from hypothesis import strategies as st

KEY = base64.b64encode(b"test-signing-key-0123456789abcdef").decode()
WHSEC = "whsec_" + base64.b64encode(b"quo-new-webhooks-secret-0123456").decode()
CAP = 1_048_576  # ARREARS_HTTP_MAX_BODY_BYTES default
FIFTY_MB = 50_000_000


def responses_settings(broker: Any, database_url: str) -> ResponsesSettings:
    return ResponsesSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=database_url,
        quo_webhook_signing_key=KEY,
        quo_webhook_secret=WHSEC,
        runner_poll_timeout_ms=100,
    )


@pytest.fixture(scope="module")
async def responses_url(broker: Any, fresh_database_url: Callable[..., str]) -> AsyncIterator[str]:
    host = ServiceHost(definition(responses_settings(broker, fresh_database_url("responses_public"))))
    app = host.build_app()
    await host.start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
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
        await host.stop()


async def post_huge(url: str, *, chunked: bool, total: int = FIFTY_MB) -> tuple[bytes, int, float]:
    """POST `total` bytes to /webhooks/quo with a bad signature, reading the answer while sending (as curl
    or Go do). Returns (the answer's first bytes, bytes the client managed to send, seconds)."""
    _, _, rest = url.partition("//")
    host, _, port = rest.partition(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65_536)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    reader, writer = await asyncio.open_connection(sock=sock)
    length = b"Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {total}\r\n".encode()
    writer.write(
        b"POST /webhooks/quo HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
        b"openphone-signature: hmac;1;1;AAAA\r\n" + length + b"\r\n"
    )
    sent = 0
    started = time.monotonic()

    async def send() -> None:
        nonlocal sent
        chunk = b"x" * 65_536
        try:
            while sent < total:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                await writer.drain()
                sent += len(chunk)
            if chunked:
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass  # the server closed the connection: it stopped reading

    sender = asyncio.create_task(send())
    answer = await asyncio.wait_for(reader.read(200), 30)
    await asyncio.wait_for(sender, 30)
    writer.close()
    return answer, sent, time.monotonic() - started


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_50_mb_webhook_body_is_refused_early_and_not_read_in_full(
    responses_url: str, chunked: bool
) -> None:
    answer, sent, _ = await post_huge(responses_url, chunked=chunked)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    # the server read at most the cap, a 4 MiB drain and what the kernel buffers: before the fix it took
    # all 50 MB (uvicorn discards request data after a response, but reads it to the end)
    assert sent < 20_000_000, f"the server consumed {sent} bytes of a refused body"
    assert b"connection: close" in answer.lower()


async def test_a_body_slightly_over_the_cap_gets_a_clean_413_for_any_client(responses_url: str) -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(32):
            yield b"x" * 65_536  # 2 MiB, chunked: within the drain budget

    async with httpx.AsyncClient(base_url=responses_url, timeout=20) as c:
        for kwargs in ({"content": body()}, {"content": b"x" * (CAP + 1)}):
            r = await c.post("/webhooks/quo", headers={"openphone-signature": "hmac;1;1;AAAA"}, **kwargs)
            assert r.status_code == 413 and r.json() == {"detail": f"request body exceeds {CAP} bytes"}
        # within the cap the signature decides
        r = await c.post("/webhooks/quo", content=b"{}", headers={"openphone-signature": "hmac;1;1;AAAA"})
        assert r.status_code == 401


# -- total parsers -------------------------------------------------------------------------------------------
header_text = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=st.characters(max_codepoint=255), max_size=200),  # what Starlette decodes (latin-1)
    st.builds(lambda t, r: f"hmac;1;{t};{r}", st.text(max_size=20), st.text(max_size=60)),
    st.builds(lambda t: f"t={t},v1=\u00e9", st.text(max_size=20)),
)
NOW = time.time()


@settings(max_examples=300)
@given(header_text, st.binary(max_size=64))
def test_openphone_signature_is_total(value: str, body: bytes) -> None:
    with pytest.raises(InvalidSignature):
        verify_openphone_signature({"openphone-signature": value}, body, KEY, now=NOW)


@settings(max_examples=300)
@given(header_text, header_text, header_text, st.binary(max_size=64))
def test_standard_webhook_is_total(msg_id: str, ts: str, sig: str, body: bytes) -> None:
    headers = {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": sig}
    with pytest.raises(InvalidSignature):
        verify_standard_webhook(body, headers, WHSEC, now=NOW)
    with pytest.raises(WebhookRejected):
        verify_quo_webhook(
            headers, body, ResponsesSettings(quo_webhook_secret=WHSEC, quo_webhook_signing_key=KEY)
        )


@settings(max_examples=300)
@given(st.one_of(st.none(), header_text), st.binary(max_size=64))
def test_stripe_signature_is_total(value: str | None, body: bytes) -> None:
    with pytest.raises(InvalidSignature):
        verify_stripe(body, value, "whsec_test", 300)


@settings(max_examples=300)
@given(st.one_of(st.none(), header_text), st.binary(max_size=64))
def test_hub_signature_is_total(value: str | None, body: bytes) -> None:
    assert verify_signature("app-secret", body, value) is False


def test_non_ascii_timestamp_was_the_500() -> None:
    """The reproductions: each raised something other than the typed error before (a 500 on the route)."""
    digits = "\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660"  # Arabic-Indic
    with pytest.raises(InvalidSignature):  # int() took them, then .encode("ascii") raised
        verify_openphone_signature({"openphone-signature": f"hmac;1;{digits};AAAA"}, b"{}", KEY, now=1.7e9)
    with pytest.raises(InvalidSignature):  # stripe: hmac.compare_digest TypeError on non-ASCII str
        verify_stripe(b"{}", "t=1,v1=\u00e9", "whsec_test", 300)


# -- weird headers through the ASGI app -----------------------------------------------------------------------
WEIRD: list[list[tuple[bytes, bytes]]] = [
    [(b"openphone-signature", "hmac;1;\u00e9\u00e9;AAAA".encode("latin-1"))],
    [(b"openphone-signature", b"hmac;1;" + b"9" * 5000 + b";AAAA")],
    [(b"openphone-signature", b"")],
    [(b"openphone-signature", b"hmac;1;1;AAAA"), (b"openphone-signature", b"\xff\xfe")],
    [(b"webhook-id", b"\xe9"), (b"webhook-timestamp", b"\xb2\xb3"), (b"webhook-signature", b"v1,\xe9")],
    [(b"webhook-id", b"a"), (b"webhook-timestamp", b"nan"), (b"webhook-signature", b"v1")],
    [
        (b"webhook-id", b"a"),
        (b"webhook-timestamp", str(int(NOW)).encode()),
        (b"webhook-signature", b"x" * 9000),
    ],
    [(b"webhook-id", b""), (b"webhook-id", b"b")],
]


@pytest.fixture(scope="module")
async def responses_app(
    broker: Any, fresh_database_url: Callable[..., str]
) -> AsyncIterator[httpx.AsyncClient]:
    host = ServiceHost(definition(responses_settings(broker, fresh_database_url("responses_weird"))))
    app = host.build_app()
    await host.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r") as client:
        yield client
    await host.stop()


@pytest.mark.parametrize("headers", WEIRD, ids=range(len(WEIRD)))
async def test_weird_signature_headers_get_a_4xx(responses_app: httpx.AsyncClient, headers: Any) -> None:
    r = await responses_app.post("/webhooks/quo", content=b'{"id": "x"}', headers=headers)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
