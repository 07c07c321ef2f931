"""Dead-letter policy: which errors are retried, and what a DLQ record carries.

Header names follow Spring Kafka's `DeadLetterPublishingRecoverer` so existing DLQ tooling can read ours,
plus `arrears-attempts`, `arrears-service`, `arrears-dead-lettered-at`. The original record's key, value and
headers (including `ce_id`) are kept, so a replay to the original topic is deduplicated by the inbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka.structs import ConsumerRecord

from ..cloudevents import Headers, OutgoingRecord
from ..redact import error_message, error_trace, scrub
from ..topics import dlq_topic

ORIGINAL_TOPIC = "kafka_dlt-original-topic"
ORIGINAL_PARTITION = "kafka_dlt-original-partition"
ORIGINAL_OFFSET = "kafka_dlt-original-offset"
ORIGINAL_TIMESTAMP = "kafka_dlt-original-timestamp"
ORIGINAL_GROUP = "kafka_dlt-original-consumer-group"
EXCEPTION_FQCN = "kafka_dlt-exception-fqcn"
EXCEPTION_MESSAGE = "kafka_dlt-exception-message"
EXCEPTION_STACKTRACE = "kafka_dlt-exception-stacktrace"
ATTEMPTS = "arrears-attempts"
SERVICE = "arrears-service"
DEAD_LETTERED_AT = "arrears-dead-lettered-at"
DLQ_HEADERS = {
    ORIGINAL_TOPIC,
    ORIGINAL_PARTITION,
    ORIGINAL_OFFSET,
    ORIGINAL_TIMESTAMP,
    ORIGINAL_GROUP,
    EXCEPTION_FQCN,
    EXCEPTION_MESSAGE,
    EXCEPTION_STACKTRACE,
    ATTEMPTS,
    SERVICE,
    DEAD_LETTERED_AT,
}

_MAX_MESSAGE = 1000
_MAX_TRACE = 4000


@dataclass(frozen=True, slots=True)
class Failure:
    record: ConsumerRecord
    error: BaseException
    attempts: int


def _fqcn(e: BaseException) -> str:
    t = type(e)
    return f"{t.__module__}.{t.__qualname__}"


REPLAYED_FROM = "arrears-replayed-from"
REPLAY_FOR_GROUP = "arrears-replay-for-group"
"""A replayed record is applied only by this consumer group (the one that dead-lettered it)."""


def dead_letter_record(
    key: bytes,
    value: bytes,
    headers: Headers | None,
    *,
    original_topic: str,
    original_partition: int,
    original_offset: int,
    original_timestamp: int,
    group: str,
    service: str,
    error: BaseException,
    attempts: int,
    message: str | None = None,
    trace: str | None = None,
    now: datetime | None = None,
) -> OutgoingRecord:
    """The DLQ record (`<original_topic>.<group>.dlq`) of a record that failed: its key, value and headers
    (minus DLQ headers of an earlier dead-lettering) plus the DLQ headers. DLQ headers are read by operators
    and tools that must not see customers' personal data (the payload itself stays in the record value, shown
    only on request: `arrears dlq show --payload`): `message` defaults to the error's message and `trace` to
    its stack trace without values (arrears_shared.redact); a given `message` is scrubbed of values too.
    `original_timestamp` is in epoch milliseconds; `-1` stands for an unknown partition/offset."""
    now = now or datetime.now(UTC)
    msg = error_message(error) if message is None else scrub(message)
    if trace is None:  # an error that was never raised (a delivery's last failure) has no trace
        stacktrace = error_trace(error, _MAX_TRACE) if error.__traceback__ is not None else ""
    else:
        stacktrace = scrub(trace)[-_MAX_TRACE:]
    kept: Headers = [(k, v) for k, v in (headers or ()) if k not in DLQ_HEADERS]
    extra: Headers = [
        (ORIGINAL_TOPIC, original_topic.encode()),
        (ORIGINAL_PARTITION, str(original_partition).encode()),
        (ORIGINAL_OFFSET, str(original_offset).encode()),
        (ORIGINAL_TIMESTAMP, str(original_timestamp).encode()),
        (ORIGINAL_GROUP, group.encode()),
        (EXCEPTION_FQCN, _fqcn(error).encode()),
        (EXCEPTION_MESSAGE, msg[:_MAX_MESSAGE].encode("utf-8", "replace")),
        (EXCEPTION_STACKTRACE, stacktrace.encode("utf-8", "replace")),
        (ATTEMPTS, str(attempts).encode()),
        (SERVICE, service.encode()),
        (DEAD_LETTERED_AT, now.isoformat().encode()),
    ]
    return OutgoingRecord(dlq_topic(original_topic, group), key, value, kept + extra)


def dead_letter(failure: Failure, *, group: str, now: datetime | None = None) -> OutgoingRecord:
    """The DLQ record of a consumed record that failed (the group names the DLQ and the service)."""
    rec = failure.record
    return dead_letter_record(
        rec.key or b"",
        rec.value or b"",
        rec.headers,
        original_topic=rec.topic,
        original_partition=rec.partition,
        original_offset=rec.offset,
        original_timestamp=rec.timestamp,
        group=group,
        service=group,
        error=failure.error,
        attempts=failure.attempts,
        now=now,
    )


def is_infrastructure_error(e: BaseException) -> bool:
    """Errors that mean "the database or network is down", not "this record is bad": retried without limit
    (the consumer stops making progress, readiness turns red) and never dead-lettered.

    Walks the exception chain, because SQLAlchemy wraps the driver's error."""
    import asyncpg.exceptions as pg
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    infra = (
        OperationalError,
        InterfaceError,
        ConnectionError,
        TimeoutError,
        OSError,
        pg.PostgresConnectionError,
        pg.CannotConnectNowError,
        pg.AdminShutdownError,
        pg.CrashShutdownError,
        pg.TooManyConnectionsError,
        pg.ConnectionDoesNotExistError,
    )
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, infra):
            return True
        if isinstance(cur, DBAPIError) and cur.connection_invalidated:
            return True
        if isinstance(cur, pg.ObjectNotInPrerequisiteStateError) and "accepting connections" in str(cur):
            return True
        cur = cur.__cause__ or cur.__context__
    return False
