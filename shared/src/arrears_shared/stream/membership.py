"""A stream runner's membership of its consumer group: what health checks read about it (`RunnerState`),
the rebalance listener that keeps that state, and leaving the group when the runner is cancelled."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from .partition_metrics import PartitionMetrics

log = logging.getLogger("arrears_shared.stream.runner")  # the runner's logger: these are its messages

# consumers still leaving their group after their runner was cancelled (a reference keeps the task alive)
_LEAVING: set[asyncio.Task[None]] = set()
CANCELLED_CLOSE_WAIT_S = 1.5


async def close_after_cancel(consumer: AIOKafkaConsumer) -> None:
    """Close a consumer whose runner was cancelled (the host's shutdown grace ran out). aiokafka's stop()
    first finishes a join in flight, which can take a whole rebalance: wait for it briefly, then let it
    finish in the background, so the stop still fits the grace period and the consumer still leaves its
    group instead of staying in it, heartbeating and holding partitions nobody consumes."""
    task = asyncio.ensure_future(consumer.stop())
    _LEAVING.add(task)
    task.add_done_callback(_LEAVING.discard)
    try:
        await asyncio.wait_for(asyncio.shield(task), CANCELLED_CLOSE_WAIT_S)
    except TimeoutError:
        log.info("consumer still leaving its group in the background")


@dataclass
class RunnerState:
    """What health checks read."""

    joined: bool = False
    assigned: set[TopicPartition] = field(default_factory=set)
    last_progress: float = field(default_factory=time.monotonic)
    lag: dict[TopicPartition, int] = field(default_factory=dict)
    waiting_on_infrastructure: str | None = None

    def stuck(self, after_s: float) -> bool:
        behind = any(v > 0 for v in self.lag.values())
        return bool(self.assigned) and behind and time.monotonic() - self.last_progress > after_s


class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, state: RunnerState, group: str, metrics: PartitionMetrics) -> None:
        self.state, self.group, self.metrics = state, group, metrics

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Batches are processed and committed between polls, so nothing is in flight here.
        self.state.assigned -= set(revoked)
        for tp in revoked:
            self.state.lag.pop(tp, None)
        self.metrics.forget(revoked)  # the new owner exports them; a stale series would double-count

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.state.joined = True
        self.state.assigned = set(assigned)
        self.state.last_progress = time.monotonic()
        log.info(
            "partitions assigned", extra={"group": self.group, "partitions": sorted(str(t) for t in assigned)}
        )
