"""httplib2 re-sends a request on a fresh connection when the first one closes before the status line. For
Gmail `messages.send` that would be a second email whenever Google accepted the first and the connection
dropped: the client must report the send as in doubt instead (and reconcile), after one transmission."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from arrears_shared.providers.errors import ProviderInDoubt, ProviderTransientError
from arrears_shared.providers.gmail import GmailClient


class ClosingServer:
    """Reads each HTTP request completely, counts it, and closes the connection without answering."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.requests: list[bytes] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(h.split(b":")[1])
                        for h in head.split(b"\r\n")
                        if h.lower().startswith(b"content-length")
                    ),
                    0,
                )
                while len(body) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                if head:  # a connection opened and closed without a request is not a transmission
                    self.requests.append(head.split(b"\r\n")[0])

    def __enter__(self) -> ClosingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self.sock.close()


@pytest.fixture
def server() -> Iterator[ClosingServer]:
    with ClosingServer() as s:
        yield s


async def test_send_is_transmitted_once_then_in_doubt(server: ClosingServer) -> None:
    client = GmailClient.for_emulator(server.url, timeout_s=5.0, max_workers=2)
    try:
        with pytest.raises(ProviderInDoubt):
            await client.send_raw(b"Subject: x\r\n\r\nhello")
        assert len(server.requests) == 1 and server.requests[0].startswith(b"POST ")
        # A read may be retried by httplib2 (harmless): the same server sees it twice.
        with pytest.raises(ProviderTransientError):
            await client.get_message("m1")
        assert [r.split(b" ")[0] for r in server.requests] == [b"POST", b"GET", b"GET"]
    finally:
        client.close()
