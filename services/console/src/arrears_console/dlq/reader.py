"""DLQ view: a plain aiokafka consumer (group `console-dlq`) over every dead-letter topic.

The shared StreamRunner hands handlers decoded envelopes without Kafka headers, but a DLQ record's meaning is
in its `kafka_dlt-*` headers, so this reader works on raw records. It stores metadata only (never the value),
inserts idempotently on (topic, partition, offset) and commits offsets after the database write.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord
from arrears_shared import topology
from arrears_shared.service import Context
from arrears_shared.stream import dead_letter as dl
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..settings import ConsoleSettings

log = logging.getLogger(__name__)

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_PHONE = re.compile(r"\+?\d[\d\s().-]{6,}\d")


def mask_pii(s: str | None, limit: int = 500) -> str | None:
    """Exception messages can quote data: hide anything that looks like an email or a phone number."""
    if s is None:
        return None
    return _PHONE.sub("***", _EMAIL.sub("***@***", s))[:limit]


def _int(v: str | None) -> int | None:
    try:
        return int(v) if v not in (None, "") else None
    except ValueError:
        return None


def _time(v: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(v) if v else None
    except ValueError:
        return None


def dlq_row(rec: ConsumerRecord) -> dict[str, Any]:
    h: dict[str, str] = {}
    for k, v in rec.headers or ():
        h[k] = v.decode("utf-8", "replace") if v is not None else ""
    fqcn = h.get(dl.EXCEPTION_FQCN, "")
    message = h.get(dl.EXCEPTION_MESSAGE, "")
    reason = f"{fqcn.rsplit('.', 1)[-1]}: {message}" if fqcn else message
    return {
        "topic": rec.topic,
        "partition": rec.partition,
        "offset": rec.offset,
        "ce_id": h.get("ce_id"),
        "ce_type": h.get("ce_type"),
        "account_id": h.get("ce_subject") or (rec.key.decode("utf-8", "replace") if rec.key else None),
        "original_topic": h.get(dl.ORIGINAL_TOPIC),
        "original_partition": _int(h.get(dl.ORIGINAL_PARTITION)),
        "original_offset": _int(h.get(dl.ORIGINAL_OFFSET)),
        "consumer_group": h.get(dl.ORIGINAL_GROUP),
        "reason": mask_pii(reason),
        "attempts": _int(h.get(dl.ATTEMPTS)),
        "service": h.get(dl.SERVICE),
        "dead_lettered_at": _time(h.get(dl.DEAD_LETTERED_AT)),
    }


async def store(conn: AsyncConnection, schema: str, records: Sequence[ConsumerRecord]) -> int:
    rows = [dlq_row(r) for r in records]
    if not rows:
        return 0
    types = {
        "topic": "text", "partition": "integer", "offset": "bigint", "ce_id": "text", "ce_type": "text",
        "account_id": "text", "original_topic": "text", "original_partition": "integer",
        "original_offset": "bigint", "consumer_group": "text", "reason": "text", "attempts": "integer",
        "service": "text", "dead_lettered_at": "timestamptz",
    }  # fmt: skip
    cols = ", ".join(f'"{c}"' for c in types)
    arrays = ", ".join(f"CAST(:{c} AS {t}[])" for c, t in types.items())
    result = await conn.execute(
        text(
            f"INSERT INTO {schema}.dlq ({cols}) SELECT * FROM unnest({arrays}) "
            'ON CONFLICT (topic, partition, "offset") DO NOTHING'
        ),
        {c: [r[c] for r in rows] for c in types},
    )
    return int(result.rowcount or 0)


async def dlq_loop(ctx: Context) -> None:
    settings = cast(ConsoleSettings, ctx.settings)
    consumer = AIOKafkaConsumer(
        group_id=settings.console_dlq_group,
        client_id="console-dlq",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **settings.kafka_client_kwargs(),
    )
    consumer.subscribe(topology.dlq_topics())
    await consumer.start()
    try:
        while not ctx.stopping.is_set():
            batch = await consumer.getmany(timeout_ms=300, max_records=settings.console_dlq_batch)
            if not batch:
                continue
            records = [r for recs in batch.values() for r in recs]
            async with ctx.engine.begin() as conn:
                added = await store(conn, ctx.schema, records)
            try:
                await consumer.commit({tp: recs[-1].offset + 1 for tp, recs in batch.items() if recs})
            except (
                CommitFailedError,
                KafkaError,
            ) as e:  # rebalanced: redelivery is absorbed by the unique key
                log.warning(
                    "DLQ offset commit failed; records will be re-read", extra={"error": str(e)[:200]}
                )
            if added:
                log.info("dead-lettered records recorded", extra={"count": added})
    finally:
        await consumer.stop()
