"""Helpers the benchmark scripts share (each script runs as `python bench/<name>.py`, so this directory is on
`sys.path`)."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from arrears_shared.cloudevents import OutgoingRecord


def ensure_stack_keys() -> None:
    """A fresh audit key and vault master and index key for this run (the services it starts inherit the
    environment), unless the caller set their own: every bench measures with audit entries sealed and
    personal data encrypted, as production runs."""
    os.environ.setdefault("ARREARS_AUDIT_HMAC_KEY", secrets.token_urlsafe(48))
    os.environ.setdefault("ARREARS_VAULT_MASTER_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
    os.environ.setdefault("ARREARS_VAULT_INDEX_KEY", secrets.token_urlsafe(48))


async def create_topics(bootstrap: str, names: Sequence[str], partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def produce_all(bootstrap: str, topic: str, recs: Sequence[OutgoingRecord]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1 << 20)
    await p.start()
    try:
        futs = [await p.send(topic, value=r.value, key=r.key, headers=r.headers) for r in recs]
        await asyncio.gather(*futs)
    finally:
        await p.stop()


async def kill_and_restart(proc: Any, pause_s: float = 0.5) -> None:
    """SIGKILL one managed process (no shutdown, no flush: a crash at whatever line it was on), reap it,
    and start it again after `pause_s`."""
    proc.kill(signal.SIGKILL)
    proc.wait(5)
    await asyncio.sleep(pause_s)
    proc.start()
