"""Create every Arrears topic (events + DLQs) idempotently."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from arrears_shared.topology import all_topics


async def ensure_topics(
    bootstrap: str,
    partitions: int,
    *,
    kafka_kwargs: Mapping[str, Any] | None = None,
    topics: Iterable[str] | None = None,
    replication_factor: int = 1,
    timeout_s: float = 15.0,
) -> list[str]:
    """Create `topics` (default: `arrears_shared.topology.all_topics()`) that don't exist yet; return the names
    created. Existing topics are left as they are. `kafka_kwargs` (e.g. `KafkaSettings.kafka_client_kwargs()`)
    replace `bootstrap` when given, for SASL/TLS clusters."""
    wanted = list(dict.fromkeys(topics if topics is not None else all_topics()))
    kwargs: dict[str, Any] = dict(kafka_kwargs) if kafka_kwargs else {"bootstrap_servers": bootstrap}
    kwargs.setdefault("request_timeout_ms", int(timeout_s * 1000))
    admin = AIOKafkaAdminClient(**kwargs)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            resp = await admin.create_topics(
                [
                    NewTopic(name=t, num_partitions=partitions, replication_factor=replication_factor)
                    for t in missing
                ]
            )
            for entry in resp.topic_errors:
                name, code = entry[0], entry[1]
                if code and not isinstance(for_code(code)(), TopicAlreadyExistsError):
                    raise for_code(code)(f"creating topic {name}: {entry[2:] if len(entry) > 2 else ''}")
        await _wait_visible(admin, wanted, timeout_s)
        return missing
    finally:
        await admin.close()


async def _wait_visible(admin: AIOKafkaAdminClient, wanted: list[str], timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        present = set(await admin.list_topics())
        if all(t in present for t in wanted):
            return
        if loop.time() >= deadline:
            raise TimeoutError(f"topics not visible after {timeout_s}s: {sorted(set(wanted) - present)}")
        await asyncio.sleep(0.05)
