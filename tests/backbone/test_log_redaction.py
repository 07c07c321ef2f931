"""`configure_logging` redacts credentials: our API keys, Bearer/Basic values, JWTs and password/token/key
query values, in the message (also when they come in through `%` args), in `extra` fields and in
tracebacks; the rest of each line is kept."""

from __future__ import annotations

import base64
import io
import json
import logging
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from arrears_shared.telemetry import RedactSecrets, configure_logging, redact

API_KEY_ID = "0123456789ab"
API_KEY_SECRET = secrets.token_urlsafe(32)  # 43 url-safe chars, like the real ones
API_KEY = f"ark_{API_KEY_ID}_{API_KEY_SECRET}"
JWT = (
    base64.urlsafe_b64encode(b'{"alg":"RS256","typ":"JWT"}').rstrip(b"=").decode()
    + "."
    + base64.urlsafe_b64encode(b'{"sub":"alice","exp":1900000000}').rstrip(b"=").decode()
    + "."
    + secrets.token_urlsafe(64)
)
OPAQUE = secrets.token_urlsafe(24)
BASIC = base64.b64encode(b"ops:" + secrets.token_hex(8).encode()).decode()
PASSWORD = "Hunter2-" + secrets.token_hex(6)


@pytest.fixture(params=["json", "text"])
def logs(request: pytest.FixtureRequest) -> Iterator[tuple[logging.Logger, io.StringIO, str]]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("redaction-test", "DEBUG", request.param, stream=stream)
    try:
        yield logging.getLogger("arrears.test.redaction"), stream, request.param
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def lines(stream: io.StringIO) -> str:
    return stream.getvalue()


CASES: list[tuple[str, str, tuple[Any, ...], str, str]] = [
    # (name, msg, args, secret that must not appear, text that must appear)
    (
        "api key in msg",
        f"rejected X-API-Key: {API_KEY} for /ingest/upload",
        (),
        API_KEY_SECRET,
        f"rejected X-API-Key: ark_{API_KEY_ID}_[redacted] for /ingest/upload",
    ),
    (
        "api key in args",
        "key %s revoked by %s",
        (API_KEY, "alice"),
        API_KEY_SECRET,
        f"key ark_{API_KEY_ID}_[redacted] revoked by alice",
    ),
    (
        "bearer jwt",
        "upstream call with Authorization: Bearer %s failed",
        (JWT,),
        JWT.split(".")[2],
        "upstream call with Authorization: Bearer [redacted] failed",
    ),
    (
        "bearer opaque",
        "header authorization=bearer %s",
        (OPAQUE,),
        OPAQUE,
        "header authorization=bearer [redacted]",
    ),
    (
        "basic",
        "proxy sent %r",
        ({"Authorization": f"Basic {BASIC}"},),
        BASIC,
        "proxy sent {'Authorization': 'Basic [redacted]'}",
    ),
    ("bare jwt", "id_token %s accepted", (JWT,), JWT.split(".")[1], "id_token [redacted] accepted"),
    (
        "query values",
        "GET https://quo.example/v1/messages?limit=5&api_key=%s&token=%s&password=%s done",
        (OPAQUE, JWT, PASSWORD),
        PASSWORD,
        "GET https://quo.example/v1/messages?limit=5&api_key=[redacted]&token=[redacted]&password=[redacted] done",
    ),
]


@pytest.mark.parametrize(("name", "msg", "args", "secret", "kept"), CASES, ids=[c[0] for c in CASES])
def test_secrets_in_messages_and_args_are_redacted(
    logs: tuple[logging.Logger, io.StringIO, str],
    name: str,
    msg: str,
    args: tuple[Any, ...],
    secret: str,
    kept: str,
) -> None:
    log, stream, fmt = logs
    log.warning(msg, *args)
    out = lines(stream)
    assert secret not in out
    for s in (API_KEY_SECRET, JWT, OPAQUE, BASIC, PASSWORD):
        assert s not in out
    if fmt == "json":
        line = json.loads(out)
        assert line["message"] == kept and line["service"] == "redaction-test"
    else:
        assert kept in out


def test_string_extra_fields_are_redacted_and_secret_named_fields_whole(
    logs: tuple[logging.Logger, io.StringIO, str],
) -> None:
    log, stream, fmt = logs
    log.info(
        "webhook forwarded",
        extra={
            "url": f"https://hooks.example/in?secret={PASSWORD}&account=A-1",
            "auth": f"Bearer {OPAQUE}",
            "api_key": "anything at all",  # named like a secret: redacted whatever it looks like
            "password": 12345,
            "attempt": 3,
            "account_id": "A-1",
        },
    )
    out = lines(stream)
    for s in (PASSWORD, OPAQUE, "anything at all", "12345"):
        assert s not in out
    if fmt == "json":
        line = json.loads(out)
        assert line["message"] == "webhook forwarded"
        assert line["url"] == "https://hooks.example/in?secret=[redacted]&account=A-1"
        assert line["auth"] == "Bearer [redacted]"
        assert (line["api_key"], line["password"]) == ("[redacted]", "[redacted]")
        assert (line["attempt"], line["account_id"]) == (3, "A-1")
    else:
        assert "url=https://hooks.example/in?secret=[redacted]&account=A-1" in out
        assert "attempt=3" in out and "account_id=A-1" in out


def test_tracebacks_are_redacted(logs: tuple[logging.Logger, io.StringIO, str]) -> None:
    log, stream, fmt = logs
    try:
        raise RuntimeError(f"provider said 401 for https://api.example/x?token={OPAQUE} with key {API_KEY}")
    except RuntimeError:
        log.exception("send failed for %s", "A-7")
    out = lines(stream)
    assert OPAQUE not in out and API_KEY_SECRET not in out
    assert "send failed for A-7" in out
    assert "RuntimeError: provider said 401 for https://api.example/x?token=[redacted]" in (
        json.loads(out)["exc_info"] if fmt == "json" else out
    )
    assert "Traceback (most recent call last)" in out


def test_ordinary_lines_are_untouched(logs: tuple[logging.Logger, io.StringIO, str]) -> None:
    log, stream, fmt = logs
    msgs = [
        ("consumed %d records from %s", (42, "arrears.account-changed")),
        ("basic validation failed on row %d; the bearer of the account is %s", (7, "A-9")),
        ("keys are ark_... tokens; monkey business %s", ("none",)),
        ("100%% of %s", ("rows",)),
    ]
    for m, a in msgs:
        log.info(m, *a)
    out = lines(stream)
    for m, a in msgs:
        assert (m % a) in out
    assert "[redacted]" not in out


def test_a_broken_format_string_still_reaches_logging_error_handling() -> None:
    """The filter never raises: a bad `%` call is logging's own problem, reported as usual."""
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d items", ("many",), None)
    assert RedactSecrets().filter(record) is True
    assert record.args == ("many",)


def test_dict_messages_stay_dicts() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, {"event": "login", "token": OPAQUE}, None, None
    )
    RedactSecrets().filter(record)
    assert record.msg == {"event": "login", "token": "[redacted]"}


def test_redact_is_idempotent_and_linear() -> None:
    text = f"Bearer {JWT} {API_KEY} token={OPAQUE} {JWT}"
    once = redact(text)
    assert redact(once) == once
    assert once == f"Bearer [redacted] ark_{API_KEY_ID}_[redacted] token=[redacted] [redacted]"
    # a megabyte of trigger-rich text is handled in one pass
    huge = "key=" + "a" * 1_000_000 + " ark_" + "b-" * 100_000
    assert redact(huge) == "key=[redacted] ark_[redacted]"
