"""What the Dead letters pages need beyond the reader: filtered browsing of the read model, one record read
from its DLQ topic (headers and value), masking of personal data for people without `accounts.read`, and
the set a filtered replay sends (read from the topics themselves, as `arrears dlq replay` does)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from arrears_shared import dlq as dead_letters
from arrears_shared.auth.masking import mask_email, mask_name, mask_phone
from arrears_shared.stream import dead_letter as dl
from arrears_shared.topology import dlq_topics
from arrears_shared.vault.subject_access import opened_for_display
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..readmodels.models import DlqItem
from .reader import mask_pii


@dataclass(frozen=True)
class DlqFilter:
    topic: str = ""
    group: str = ""
    reason: str = ""
    account: str = ""

    @property
    def empty(self) -> bool:
        return not (self.topic or self.group or self.reason or self.account)

    def params(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params().items()) or "no filter"


async def browse(
    conn: AsyncConnection, schema: str, f: DlqFilter, limit: int = 200
) -> tuple[list[DlqItem], int]:
    """Newest first from the read model (metadata only; reasons already masked by the reader)."""
    where, params = [], {"n": limit}
    if f.topic:
        where.append("topic = :topic")
        params["topic"] = f.topic  # type: ignore[assignment]
    if f.group:
        where.append("consumer_group = :grp")
        params["grp"] = f.group  # type: ignore[assignment]
    if f.reason:
        where.append("reason ILIKE :reason")
        params["reason"] = "%" + f.reason.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + "%"  # type: ignore[assignment]
    if f.account:
        where.append("account_id = :account")
        params["account"] = f.account  # type: ignore[assignment]
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    rows = await conn.execute(
        text(
            f"""SELECT topic, partition, "offset", ce_id, ce_type, account_id, original_topic, consumer_group,
                   reason, attempts, service, dead_lettered_at, recorded_at
            FROM {schema}.dlq {clause} ORDER BY recorded_at DESC, id DESC LIMIT :n"""
        ),
        params,
    )
    items = [DlqItem.model_validate(r._asdict()) for r in rows]
    total = (await conn.execute(text(f"SELECT count(*) FROM {schema}.dlq {clause}"), params)).scalar_one()
    return items, int(total)


async def facets(conn: AsyncConnection, schema: str) -> tuple[list[str], list[str]]:
    """The DLQ topics and consumer groups that hold records (for the filter's choices)."""
    topics = [r[0] for r in await conn.execute(text(f"SELECT DISTINCT topic FROM {schema}.dlq ORDER BY 1"))]
    groups = [
        r[0]
        for r in await conn.execute(
            text(
                f"SELECT DISTINCT consumer_group FROM {schema}.dlq WHERE consumer_group IS NOT NULL ORDER BY 1"
            )
        )
    ]
    return topics, groups


def is_dlq_topic(topic: str) -> bool:
    return topic.endswith(".dlq") and len(topic) <= 300


async def fetch(
    kafka: dict[str, Any], topic: str, partition: int, offset: int
) -> dead_letters.DeadLetter | None:
    """The record at `topic`/`partition`/`offset`, read directly (no group, nothing committed)."""
    consumer = AIOKafkaConsumer(enable_auto_commit=False, group_id=None, **kafka)
    await consumer.start()
    try:
        if topic not in await consumer.topics() or partition not in (
            consumer.partitions_for_topic(topic) or ()
        ):
            return None
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        start, end = (await consumer.beginning_offsets([tp]))[tp], (await consumer.end_offsets([tp]))[tp]
        if not start <= offset < end:
            return None
        consumer.seek(tp, offset)
        for _ in range(10):
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1)
            for r in batch.get(tp, []):
                if r.offset == offset:
                    return dead_letters.DeadLetter(
                        topic, partition, r.offset, r.key, r.value, list(r.headers or ())
                    )
                if r.offset > offset:  # compacted away
                    return None
        return None
    finally:
        await consumer.stop()


async def replay_set(kafka: dict[str, Any], f: DlqFilter, cap: int) -> list[dead_letters.DeadLetter]:
    """The records a filtered replay sends, read from the DLQ topics (at most `cap` + 1, so the caller can
    tell when the filter matches more than one replay may send)."""
    if f.topic:
        topics = [f.topic]
    elif f.group:
        topics = [t for t in dlq_topics() if t.endswith(f".{f.group}.dlq")]
    else:
        topics = dlq_topics()
    if not topics:
        return []
    found = await dead_letters.scan(
        kafka,
        dead_letters.Filter(
            topics=tuple(topics), reason_contains=f.reason or None, account_id=f.account or None
        ),
        limit=cap + 1,
    )
    if f.group:
        return [d for d in found if d.h.get(dl.ORIGINAL_GROUP) == f.group]
    return found


def ref(d: dead_letters.DeadLetter) -> str:
    return f"{d.dlq_topic}/{d.partition}/{d.offset}"


def digest(records: list[dead_letters.DeadLetter]) -> str:
    """Names the exact set shown on the confirmation page (the replay refuses a set that changed since)."""
    return hashlib.sha256("\n".join(sorted(ref(d) for d in records)).encode()).hexdigest()[:16]


# -- personal data ---------------------------------------------------------------------------------------

_NAMES = {"customer_name", "name", "actor"}
_ADDRESSES = {"phone", "email", "to", "from_address", "to_address", "fallback_to", "address", "reply_to"}
_FREE_TEXT = {"text", "value", "body", "subject", "notes", "note", "detail", "failure_message", "raw"}


def _mask_address(v: Any) -> Any:
    if isinstance(v, str):
        return mask_email(v) if "@" in v else mask_phone(v)
    if isinstance(v, list):
        return [_mask_address(x) for x in v]
    if isinstance(v, dict):
        return {k: _mask_address(x) for k, x in v.items()}
    return v


def mask_data(v: Any, key: str | None = None) -> Any:
    """A JSON value with personal data masked: names to initials, phones and emails partly hidden, free
    text hidden, and anything else that looks like an email or a phone number starred."""
    if isinstance(v, dict):
        return {k: mask_data(x, k) for k, x in v.items()}
    if isinstance(v, list):
        return [mask_data(x, key) for x in v]
    if v is None or isinstance(v, bool | int | float):
        return v
    if key in _NAMES and isinstance(v, str):
        return mask_name(v)
    if key in _ADDRESSES:
        return _mask_address(v)
    if key in _FREE_TEXT:
        return "••• (hidden: personal data)"
    return mask_pii(str(v), limit=100_000)


async def opened_value(conn: AsyncConnection, d: dead_letters.DeadLetter) -> bytes | None:
    """The record's value with its sealed personal fields opened (arrears_shared.vault.subject_access)."""
    return await opened_for_display(conn, d.headers, d.value)


def payload_text(value: bytes | None, sees_pii: bool) -> tuple[str, bool]:
    """(the value for display, whether it is JSON). JSON is pretty-printed; without `accounts.read` personal
    data is masked, and a value that is not JSON is not shown at all."""
    if not value:
        return "(empty)", False
    try:
        data = json.loads(value)
    except ValueError:
        if sees_pii:
            return value.decode("utf-8", "replace"), False
        return f"(not JSON, {len(value)} bytes: hidden, it may hold personal data)", False
    return json.dumps(
        data if sees_pii else mask_data(data), indent=2, ensure_ascii=False, sort_keys=True
    ), True


def headers_for_display(d: dead_letters.DeadLetter, sees_pii: bool) -> list[tuple[str, str]]:
    """Every header; exception messages and stack traces can quote data, so they are masked likewise."""
    out = []
    for k, raw in d.headers:
        v = raw.decode("utf-8", "replace") if raw is not None else ""
        out.append((k, v if sees_pii else (mask_pii(v, limit=100_000) or "")))
    return out
