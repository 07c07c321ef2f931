"""JSON logging and the Prometheus metrics every service shares.

Labels never carry account ids, phone numbers or emails (cardinality and PII): only service, topic,
partition, channel, provider, status and similar small enumerations.
"""

from __future__ import annotations

import logging
import sys

from prometheus_client import Counter, Gauge, Histogram
from pythonjsonlogger.json import JsonFormatter

EVENTS_CONSUMED = Counter("arrears_events_consumed_total", "Records consumed", ["service", "topic"])
EVENTS_PRODUCED = Counter(
    "arrears_events_produced_total", "Records published by the outbox relay", ["service", "topic"]
)
EVENTS_FAILED = Counter("arrears_events_failed_total", "Handler attempts that raised", ["service", "topic"])
EVENTS_DEAD_LETTERED = Counter(
    "arrears_events_dead_lettered_total", "Records sent to a dead-letter topic", ["service", "topic"]
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
    "arrears_consumer_lag", "High watermark minus position", ["service", "topic", "partition"]
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


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    """Log to stdout, one JSON object per line (`fmt="json"`), with the service name on every line."""
    handler = logging.StreamHandler(sys.stdout)
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
