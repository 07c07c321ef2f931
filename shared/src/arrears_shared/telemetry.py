"""JSON logging and the Prometheus metrics every service shares.

Labels never carry account ids, phone numbers or emails (cardinality and PII): only service, topic,
partition, channel, provider, status and similar small enumerations.

Logs never carry a credential: `configure_logging` installs `RedactSecrets` on its handler (see below).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import sys
from typing import IO, Any

from prometheus_client import Counter, Gauge, Histogram
from pythonjsonlogger.json import JsonFormatter

from .redact import RedactErrors, RewritingFilter

EVENTS_CONSUMED = Counter("arrears_events_consumed_total", "Records consumed", ["service", "topic"])
EVENTS_PRODUCED = Counter(
    "arrears_events_produced_total", "Records published by the outbox relay", ["service", "topic"]
)
EVENTS_FAILED = Counter("arrears_events_failed_total", "Handler attempts that raised", ["service", "topic"])
EVENTS_DEAD_LETTERED = Counter(
    "arrears_events_dead_lettered_total", "Records sent to a dead-letter topic", ["service", "topic"]
)
EVENTS_ERASED = Counter(
    "arrears_events_erased_total",
    "Records skipped because they belong to an erased account (their personal data is unreadable)",
    ["service", "topic"],
)
EVENTS_DUPLICATE = Counter(
    "arrears_events_duplicate_total",
    "Records skipped because their ce_id was already processed",
    ["service", "topic"],
)
HANDLER_SECONDS = Histogram(
    "arrears_handler_seconds",
    "Time to process one batch (one DB transaction)",
    ["service", "topic"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
OUTBOX_BACKLOG = Gauge("arrears_outbox_backlog", "Unpublished outbox rows", ["service"])
CONSUMER_LAG = Gauge(
    "arrears_consumer_lag",
    "High watermark minus position, for the partitions this consumer owns (removed on revocation)",
    ["service", "topic", "partition"],
)
PROCESSING_DELAY = Gauge(
    "arrears_consumer_processing_delay_seconds",
    "Age of the oldest record of an owned partition not yet processed (now minus its Kafka timestamp, "
    "computed at scrape time; 0 when caught up)",
    ["service", "topic", "partition"],
)
OUTBOX_OLDEST_AGE = Gauge(
    "arrears_outbox_oldest_age_seconds",
    "Age of the oldest unpublished outbox row, computed at scrape time (0 when none, and on replicas whose "
    "relay is not the active one)",
    ["service"],
)
HTTP_SECONDS = Histogram(
    "arrears_http_request_seconds",
    "HTTP server latency, by route template (never the raw path) and status code",
    ["service", "method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
PROVIDER_SECONDS = Histogram(
    "arrears_provider_request_seconds",
    "Provider API call latency",
    ["service", "provider", "operation", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
MESSAGES_SENT = Counter("arrears_messages_sent_total", "Notice outcomes", ["service", "channel", "status"])
CIRCUIT_STATE = Gauge(
    "arrears_circuit_state", "Provider circuit breaker (0 closed, 1 half-open, 2 open)", ["service", "route"]
)
DELIVERY_FALLBACKS = Counter(
    "arrears_delivery_fallbacks_total", "Sends that used a fallback route", ["service", "route"]
)
DEPENDENCY_UP = Gauge(
    "arrears_dependency_up", "1 when a dependency answered its last check", ["service", "dependency"]
)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STD_ATTRS and not k.startswith("_")}
        return base + ("  " + " ".join(f"{k}={v}" for k, v in extras.items()) if extras else "")


_STD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


# -- secrets out of logs ------------------------------------------------------------------------------------

REDACTED = "[redacted]"
# One pass over the text, leftmost match first. The secret part is replaced, the label is kept:
#   Bearer <token> / Basic <credentials>   -> "Bearer [redacted]"   (any case; see _looks_like_credential)
#   ark_<key id>_<secret> (our API keys)   -> "ark_<key id>_[redacted]" (the id stays, to trace and revoke)
#   ark_<anything else url-safe>           -> "ark_[redacted]"
#   a JWT / JWE (eyJ... dot-separated)     -> "[redacted]"
#   password= passwd= pwd= token= secret= key= (also api_key=, access_token=, ...) -> "key=[redacted]"
# Possessive quantifiers and the `(?!\[)` guards make it linear and idempotent (redacting twice changes
# nothing).
_SECRET_RE = re.compile(
    r"(?P<scheme>\b(?i:bearer|basic)[ \t]+)(?P<cred>[A-Za-z0-9\-._~+/]++=*+)"
    r"|\bark_(?:(?P<kid>[0-9a-f]{12})_(?!\[))?[A-Za-z0-9_-]{4,}+(?!\[)"
    r"|\beyJ[A-Za-z0-9_-]++(?:\.[A-Za-z0-9_-]*+){2,4}+"
    r"|(?P<param>(?i:password|passwd|pwd|token|secret|key)=)(?P<value>[^\s&#\"'<>,;()\[\]{}]++)",
    re.ASCII,
)
# lower-case substrings one of which every match contains: a message with none of them is left alone
_TRIGGERS = ("bearer", "basic", "ark_", "eyj", "password=", "passwd=", "pwd=", "token=", "secret=", "key=")
# `extra` fields whose name says they hold a secret are redacted whole, whatever their value
_SECRET_FIELD_RE = re.compile(r"(?i)password|passwd|secret|token|api_?key|authorization|cookie|credential")


def _looks_like_credential(cred: str, scheme: str) -> bool:
    """Tell `Bearer eyJhbGc...` / `Basic dXNlcjpwYXNz` from prose such as "basic validation failed"."""
    if len(cred) < 8:
        return False
    if any(c.isdigit() or c in "+/=._~-" for c in cred) or not (cred.islower() or cred.isupper()):
        return True
    if scheme.lower().startswith(
        "basic"
    ):  # all one case, letters only: a credential if it decodes to user:pass
        try:
            return b":" in base64.b64decode(cred + "=" * (-len(cred) % 4), validate=True)
        except (binascii.Error, ValueError):
            return False
    return False


def _redact_match(m: re.Match[str]) -> str:
    if m.group("scheme") is not None:
        scheme, cred = m.group("scheme"), m.group("cred")
        return scheme + REDACTED if _looks_like_credential(cred, scheme) else m.group(0)
    if m.group("param") is not None:
        return m.group("param") + REDACTED
    if m.group(0).startswith("ark_"):
        kid = m.group("kid")
        return f"ark_{kid}_{REDACTED}" if kid else f"ark_{REDACTED}"
    return REDACTED  # a JWT


def redact(text: str) -> str:
    """`text` with every credential-looking value replaced by `[redacted]` (cheap when there is none)."""
    low = text.lower()
    if not any(t in low for t in _TRIGGERS):
        return text
    return _SECRET_RE.sub(_redact_match, text)


class RedactSecrets(RewritingFilter):
    """Redact API keys, bearer/basic credentials, JWTs and password/token/key query values in a record's
    message (after `%` formatting with its args), in its string `extra` fields, and in its traceback and
    stack text; `extra` fields named like a secret (password, token, api_key, authorization, ...) are
    redacted whole. Install it on a handler (as `configure_logging` does) so that it sees the records
    of every logger. It never drops a record and never raises."""

    def _redact(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, dict):  # JsonFormatter merges a dict message into the line
            record.msg = {k: self._value(k, v) for k, v in record.msg.items()}
        else:
            message = record.getMessage()
            clean = redact(message)
            if clean is not message and clean != message:
                record.msg, record.args = clean, None
        for key, value in list(record.__dict__.items()):
            if key not in _STD_ATTRS and not key.startswith("_"):
                new = self._value(key, value)
                if new is not value:
                    record.__dict__[key] = new
        if record.exc_info and record.exc_info[0] is not None:
            text = record.exc_text or _EXC_FORMATTER.formatException(record.exc_info)
            clean = redact(text)
            record.exc_text = clean
            if clean != text:  # formatters prefer exc_info: drop it so that only the clean text is used
                record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)

    @staticmethod
    def _value(key: object, value: Any) -> Any:
        if value is None:
            return value
        if isinstance(key, str) and _SECRET_FIELD_RE.search(key):
            return REDACTED
        if isinstance(value, str):
            return redact(value)
        return value


_EXC_FORMATTER = logging.Formatter()


def configure_logging(
    service: str, level: str = "INFO", fmt: str = "json", *, stream: IO[str] | None = None
) -> None:
    """Log to `stream` (default stdout), one JSON object per line (`fmt="json"`), with the service name on
    every line, personal data kept out of error text (`RedactErrors`, arrears_shared.redact) and credentials
    redacted (`RedactSecrets`)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.addFilter(RedactErrors())  # first: renders attached exceptions without personal data
    handler.addFilter(RedactSecrets())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                static_fields={"service": service},
            )
        )
    else:
        handler.setFormatter(_TextFormatter(f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "uvicorn.access", "httpx", "googleapiclient.discovery_cache"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
