"""Error text without personal data, for everything that leaves the process's memory.

Log lines, dead-letter headers, `/readyz` details and metric labels are read by operators and kept by tools
that must never hold a customer's name, phone, email or reply. Exceptions quote what they failed on (pydantic
the input, PostgreSQL the key in `DETAIL: Key (phone)=(...)`, our own code with `{value!r}`), so raw
`str(e)` must not go there. `describe_error(e)` is the one way to turn an exception into text:

- pydantic `ValidationError`: location, message and error type of each error, never the input;
- database errors (SQLAlchemy wrapping asyncpg): SQLSTATE, the driver's message without its `DETAIL` and
  without quoted values, and the constraint / table / column names; bound parameters are hidden by the
  engine (`hide_parameters=True`, arrears_shared.db.engine);
- exception classes that declare `pii_free = True` (their messages are written from our own constants):
  the message as is;
- any other exception: the message with values removed (quoted strings, emails, phone numbers, long digit
  runs). Operators keep the wording ("quota exhausted", "unknown ce_type '…'"), which the console's DLQ
  filters search; the convention that makes this safe is to quote every value in a message (`{value!r}`).
  A message that names a person unquoted would still leak: `tests/security/test_no_pii_in_errors.py`
  sends a canary through every input to catch such a path.

Whenever something was removed the text ends with `[fp:<8 hex>]`, a fingerprint of the full original message:
the same failure gives the same fingerprint, so operators can group and correlate occurrences across logs and
DLQ headers without ever seeing the value. `error_trace(e)` is a stack trace with frames only (file, line,
function) and `describe_error` for each exception of the chain. `RedactErrors` applies both to log records.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import re
import traceback
from typing import Any

PII_FREE = "pii_free"
"""Class attribute: `pii_free = True` on an exception class declares that its messages never quote data."""

_MAX_MESSAGE = 600

_DETAIL = re.compile(
    r"\n?\s*DETAIL:.*?(?=\n\[|\Z)", re.DOTALL
)  # PostgreSQL's DETAIL (until SQLAlchemy's [SQL:)
_INPUT_VALUE = re.compile(r"input_value=.*?, input_type=\w+", re.DOTALL)
_PARAMS = re.compile(r"\[parameters: .*?\]\n?", re.DOTALL)
_QUOTED = re.compile(r"'(?:[^'\\\n]|\\.)*+'|\"(?:[^\"\\\n]|\\.)*+\"")
_EMAIL = re.compile(r"[\w.+-]++@[\w-]++(?:\.[\w-]++)++")
_PHONE = re.compile(r"\+\s*\d[\d\s().-]{5,}\d")
_DIGITS = re.compile(r"(?<![\w.:/-])\d{7,}+(?![\w.])")
_PII_FIELDS = re.compile(r"(?i)\b(error|reason|detail|message)\b")


def fingerprint(text: str) -> str:
    """Eight hex digits identifying `text` (not reversible; equal texts give equal fingerprints)."""
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:8]


def scrub(text: str) -> str:
    """`text` with values removed: PostgreSQL `DETAIL` lines, pydantic `input_value=`, SQLAlchemy's
    `[parameters: ...]`, quoted strings, emails, phone numbers (`+` and digits) and runs of 7+ digits.
    Words, identifiers and short numbers (status codes, counts) stay."""
    text = _DETAIL.sub("", text)
    text = _PARAMS.sub("", text)
    text = _INPUT_VALUE.sub("input_value=<redacted>", text)
    text = _QUOTED.sub(lambda m: m.group(0)[0] + "…" + m.group(0)[0], text)
    text = _EMAIL.sub("<email>", text)
    text = _PHONE.sub("<phone>", text)
    return _DIGITS.sub("<number>", text)


def scrub_personal(text: str) -> str:
    """Only emails and phone numbers removed: a cheap last line of defence for any log message."""
    if "@" not in text and "+" not in text:
        return text
    return _PHONE.sub("<phone>", _EMAIL.sub("<email>", text))


def _validation_message(e: Any) -> str:
    errors = e.errors(include_input=False, include_url=False)
    parts = []
    for err in errors[:10]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
        kind = str(err.get("type", ""))
        msg = str(err.get("msg", ""))
        raised = (err.get("ctx") or {}).get("error")
        if kind in ("value_error", "assertion_error") and not _declared_pii_free(raised):
            msg = "Value error (message withheld)"  # a validator's own wording, which may quote the value
        parts.append(f"{loc}: {msg} [type={kind}, input_value=<redacted>]")
    more = f"; and {len(errors) - 10} more" if len(errors) > 10 else ""
    return f"{len(errors)} validation error(s) for {e.title}: " + "; ".join(parts) + more


def _declared_pii_free(e: object) -> bool:
    return isinstance(e, BaseException) and getattr(type(e), PII_FREE, False) is True


def _postgres_error(e: BaseException) -> BaseException | None:
    """The asyncpg error under a SQLAlchemy DBAPIError (or `e` itself), if any."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if type(cur).__module__.startswith("asyncpg") and hasattr(cur, "sqlstate"):
            return cur
        cur = getattr(cur, "orig", None) or cur.__cause__ or cur.__context__
    return None


def _database_message(e: BaseException, pg: BaseException) -> str:
    first = (getattr(pg, "message", None) or str(pg)).split("\n", 1)[0]
    names = [
        f"{attr}={value}"
        for attr in ("schema_name", "table_name", "column_name", "constraint_name")
        if (value := getattr(pg, attr, None))
    ]
    statement = getattr(e, "statement", None)
    sql = f" [SQL: {scrub(' '.join(str(statement).split()))[:200]}]" if statement else ""
    where = f" ({', '.join(names)})" if names else ""
    return f"{type(pg).__name__} sqlstate={getattr(pg, 'sqlstate', '?')}: {scrub(first)}{where}{sql}"


def describe_error(e: BaseException) -> str:
    """`Type: message` with personal data removed (see the module docstring)."""
    message = error_message(e)
    return f"{type(e).__name__}: {message}" if message else type(e).__name__


def error_message(e: BaseException) -> str:
    """The message of `e` with personal data removed, at most ~600 characters, ending with `[fp:...]`
    when anything was removed or cut."""
    raw = _raw(e)
    try:
        message = _safe_message(e)
    except Exception:  # pragma: no cover - describing an error must never raise
        message = ""
    changed = message != raw
    if len(message) > _MAX_MESSAGE:
        message, changed = message[: _MAX_MESSAGE - 1] + "…", True
    return f"{message} [fp:{fingerprint(raw)}]".lstrip() if changed and raw else message


def _raw(e: BaseException) -> str:
    try:
        return str(e)
    except Exception:  # pragma: no cover - a broken __str__
        return ""


def _safe_message(e: BaseException) -> str:
    from pydantic import ValidationError

    if isinstance(e, ValidationError):
        return _validation_message(e)
    pg = _postgres_error(e)
    if pg is not None:
        return _database_message(e, pg)
    if type(e).__module__.startswith("sqlalchemy"):
        return scrub(_raw(e).split("\n[SQL", 1)[0])
    if _declared_pii_free(e):
        return _raw(e)
    return scrub(_raw(e))


def error_trace(e: BaseException, limit: int = 4000) -> str:
    """A stack trace of `e` and the exceptions it chains, with frames (file, line, function) and each
    exception as `describe_error` gives it: no source lines' values, no locals, no raw messages. The last
    `limit` characters (the innermost frames matter most)."""
    chain: list[tuple[BaseException, str]] = []  # newest first, each with how it relates to the one after
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if cur.__cause__ is not None:
            chain.append((cur, _CAUSE))
            cur = cur.__cause__
        elif cur.__context__ is not None and not cur.__suppress_context__:
            chain.append((cur, _CONTEXT))
            cur = cur.__context__
        else:
            chain.append((cur, ""))
            cur = None
    parts: list[str] = []
    for i in range(len(chain) - 1, -1, -1):  # oldest first, as Python prints it
        exc = chain[i][0]
        frames = "".join(
            f'  File "{f.filename}", line {f.lineno}, in {f.name}\n'
            for f in traceback.extract_tb(exc.__traceback__)
        )
        parts.append(f"Traceback (most recent call last):\n{frames}{describe_error(exc)}\n")
        if i > 0:
            parts.append(chain[i - 1][1])
    return "".join(parts)[-limit:]


_CAUSE = "\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n\n"


class RewritingFilter(logging.Filter, abc.ABC):
    """A log filter that rewrites records in `_redact` and never drops one or raises."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._redact(record)
        except Exception:  # pragma: no cover - a log line must never fail because of this filter
            pass
        return True

    @abc.abstractmethod
    def _redact(self, record: logging.LogRecord) -> None:
        """Rewrite the record in place."""


class RedactErrors(RewritingFilter):
    """Log records without personal data from errors: an attached exception is rendered by `error_trace`
    (frames and redacted messages only), and the message and string `extra` fields lose emails and phone
    numbers (`scrub_personal`); string fields named error / reason / detail / message are `scrub`bed.
    Never drops a record, never raises."""

    def _redact(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = error_trace(record.exc_info[1]).rstrip("\n")
            record.exc_info = None
        if isinstance(record.msg, str):
            message = record.getMessage()
            clean = scrub_personal(message)
            if clean != message:
                record.msg, record.args = clean, None
        for key, value in list(record.__dict__.items()):
            if key in _STD_ATTRS or key.startswith("_") or not isinstance(value, str):
                continue
            record.__dict__[key] = scrub(value) if _PII_FIELDS.search(key) else scrub_personal(value)


_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
