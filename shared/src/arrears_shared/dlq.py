"""Dead-letter topics: list, inspect and replay (used by `arrears dlq` and the console).

A replay republishes the original key, value and CloudEvents headers (same `ce_id`) to the original topic,
without the dead-letter headers. The consuming service applies it once: its inbox never recorded a
dead-lettered id, and a second replay of the same record is dropped as a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from .cloudevents import header_map
from .stream import dead_letter as dl
from .topology import dlq_topics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeadLetter:
    dlq_topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @property
    def h(self) -> dict[str, str]:
        return header_map(self.headers)

    @property
    def original_topic(self) -> str:
        return self.h.get(dl.ORIGINAL_TOPIC, "")

    @property
    def reason(self) -> str:
        h = self.h
        return f"{h.get(dl.EXCEPTION_FQCN, '?')}: {h.get(dl.EXCEPTION_MESSAGE, '')}"

    @property
    def dead_lettered_at(self) -> datetime | None:
        v = self.h.get(dl.DEAD_LETTERED_AT)
        return datetime.fromisoformat(v) if v else None

    @property
    def account_id(self) -> str:
        return self.h.get("ce_subject") or (self.key or b"").decode("utf-8", "replace")

    def summary(self) -> dict[str, Any]:
        h = self.h
        return {
            "dlq_topic": self.dlq_topic,
            "partition": self.partition,
            "offset": self.offset,
            "original": f"{h.get(dl.ORIGINAL_TOPIC)}[{h.get(dl.ORIGINAL_PARTITION)}]@{h.get(dl.ORIGINAL_OFFSET)}",
            "service": h.get(dl.SERVICE),
            "ce_id": h.get("ce_id"),
            "ce_type": h.get("ce_type"),
            "account_id": self.account_id,
            "attempts": h.get(dl.ATTEMPTS),
            "reason": self.reason,
            "dead_lettered_at": h.get(dl.DEAD_LETTERED_AT),
        }


@dataclass(frozen=True)
class Filter:
    topics: Sequence[str] = ()
    reason_contains: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    account_id: str | None = None

    def match(self, d: DeadLetter) -> bool:
        if self.reason_contains and self.reason_contains.lower() not in d.reason.lower():
            return False
        if self.account_id and d.account_id != self.account_id:
            return False
        at = d.dead_lettered_at
        if self.since and (at is None or at < self.since):
            return False
        return not (self.until and (at is None or at > self.until))


class ScanResult(list[DeadLetter]):
    """The records a scan found; `truncated` is true when it stopped at its `limit` with more matching
    records left unread (the caller must say so: a silent cut would hide dead letters)."""

    def __init__(self, records: Sequence[DeadLetter] = (), *, limit: int, truncated: bool = False) -> None:
        super().__init__(records)
        self.limit = limit
        self.truncated = truncated


async def scan(
    kafka_kwargs: dict[str, Any],
    flt: Filter = Filter(),
    *,
    limit: int = 10_000,
    on_progress: Callable[[int, int], None] | None = None,
) -> ScanResult:
    """Read every matching record currently in the DLQ topics (from the beginning to the high watermark),
    without joining a consumer group or committing anything. `on_progress(read, total)` is called after
    each fetched batch (total = records in the scanned partitions). At most `limit` records are returned;
    when more match, the result's `truncated` is set and a warning is logged."""
    topics = list(flt.topics) or dlq_topics()
    consumer = AIOKafkaConsumer(enable_auto_commit=False, group_id=None, **kafka_kwargs)
    await consumer.start()
    try:
        existing = await consumer.topics()
        tps = [
            TopicPartition(t, p)
            for t in topics
            if t in existing
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]
        if not tps:
            return ScanResult(limit=limit)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        total = sum(ends[tp] - starts[tp] for tp in tps)
        read = 0
        pending = {tp for tp in tps if ends[tp] > 0}
        out: list[DeadLetter] = []
        while pending and len(out) < limit:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            if not batch:
                positions = {tp: await consumer.position(tp) for tp in pending}
                pending = {tp for tp in pending if positions[tp] < ends[tp]}
                continue
            for tp, recs in batch.items():
                for r in recs:
                    if r.offset >= ends[tp]:
                        continue
                    d = DeadLetter(tp.topic, tp.partition, r.offset, r.key, r.value, list(r.headers or ()))
                    if flt.match(d):
                        out.append(d)
                if recs and recs[-1].offset >= ends[tp] - 1:
                    pending.discard(tp)
                read += len(recs)
            if on_progress is not None:
                on_progress(min(read, total), total)
        truncated = len(out) > limit or (len(out) >= limit and bool(pending))
        if truncated:
            log.warning(
                "dead-letter scan stopped at its limit of %d records; more may match (narrow the filter)",
                limit,
                extra={"limit": limit, "topics": topics, "read": read, "total": total},
            )
        ordered = sorted(out, key=lambda d: (d.dlq_topic, d.partition, d.offset))[:limit]
        return ScanResult(ordered, limit=limit, truncated=truncated)
    finally:
        await consumer.stop()


def _report_to(on_sent: Callable[[int], None]) -> Callable[[asyncio.Future[Any]], None]:
    def done(f: asyncio.Future[Any]) -> None:
        if not f.cancelled() and f.exception() is None:
            on_sent(1)

    return done


async def replay(
    kafka_kwargs: dict[str, Any],
    records: Sequence[DeadLetter],
    *,
    on_sent: Callable[[int], None] | None = None,
) -> int:
    """Republish to the original topics with the original headers (same ce_id), addressed to the consumer
    group that dead-lettered each record (other groups on the topic skip it, so a replay can never put a
    copy into every subscriber's DLQ). Returns the count sent; `on_sent(n)` reports each acknowledged
    record (n = 1) as the broker confirms it."""
    if not records:
        return 0
    producer = AIOKafkaProducer(
        acks="all", client_id=f"arrears-dlq-replay-{uuid.uuid4().hex[:6]}", **kafka_kwargs
    )
    await producer.start()
    try:
        futures = []
        for d in records:
            if not d.original_topic:
                continue
            drop = {*dl.DLQ_HEADERS, dl.REPLAYED_FROM, dl.REPLAY_FOR_GROUP}
            headers = [(k, v) for k, v in d.headers if k not in drop]
            headers.append((dl.REPLAYED_FROM, f"{d.dlq_topic}/{d.partition}/{d.offset}".encode()))
            group = d.h.get(dl.ORIGINAL_GROUP)
            if group:  # only the group that failed it applies the replay; the others skip it
                headers.append((dl.REPLAY_FOR_GROUP, group.encode()))
            fut = await producer.send(d.original_topic, value=d.value, key=d.key, headers=headers)
            if on_sent is not None:
                fut.add_done_callback(_report_to(on_sent))
            futures.append(fut)
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()
