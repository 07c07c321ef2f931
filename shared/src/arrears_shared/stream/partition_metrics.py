"""Per-partition metrics of one stream runner: consumer lag and processing delay, exported only for the
partitions the runner's consumer owns.

- `arrears_consumer_lag` = high watermark - position, set after each poll.
- `arrears_consumer_processing_delay_seconds` = age of the oldest record of the partition not processed yet,
  computed at scrape time, so it keeps growing while the loop is blocked (database down, a stuck fetcher).
  The oldest pending record is the first record of the batch in hand; between batches, while lag > 0, the
  last processed record's timestamp bounds it (the next record is not older); a partition with lag whose
  records were never fetched counts from the moment the lag was seen. 0 when caught up.
- Revoked partitions lose both series at once (`forget`), so after a rebalance a partition is exported by
  its new owner only: no double-counted lag, no stale "stuck" lag from a pod that no longer owns it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from .. import telemetry as m


class PartitionMetrics:
    def __init__(self, service: str, owns: Callable[[TopicPartition], bool]) -> None:
        """`owns(tp)`: whether the consumer owns the partition now (a batch polled just before a rebalance
        may hold records of a partition already revoked: those are not exported again)."""
        self.service = service
        self.owns = owns
        self._pending_since: dict[TopicPartition, float] = {}  # unix time bounding the oldest pending record
        self._exported: set[TopicPartition] = set()

    def polled(self, batch: Mapping[TopicPartition, Sequence[ConsumerRecord]]) -> None:
        """A batch is in hand: its first record per partition is the oldest one not processed."""
        for tp, recs in batch.items():
            if recs and self.owns(tp):
                self._pending_since[tp] = _record_time(recs[0])
                self._export(tp)

    def processed(self, batch: Mapping[TopicPartition, Sequence[ConsumerRecord]]) -> None:
        """The batch committed: whatever follows is not older than its last record (`lag` clears it)."""
        for tp, recs in batch.items():
            if recs and tp in self._exported:
                self._pending_since[tp] = _record_time(recs[-1])

    def lag(self, tp: TopicPartition, lag: int) -> None:
        if not self.owns(tp):
            return
        m.CONSUMER_LAG.labels(self.service, tp.topic, str(tp.partition)).set(lag)
        if lag == 0:
            self._pending_since.pop(tp, None)
        else:
            self._pending_since.setdefault(tp, time.time())
        self._export(tp)

    def delay(self, tp: TopicPartition) -> float:
        since = self._pending_since.get(tp)
        return 0.0 if since is None else max(0.0, time.time() - since)

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        """Drop the series of partitions this consumer no longer owns (revoked, or the consumer stopped)."""
        for tp in list(tps):
            labels = (self.service, tp.topic, str(tp.partition))
            m.CONSUMER_LAG.remove(*labels)
            m.PROCESSING_DELAY.remove(*labels)
            self._pending_since.pop(tp, None)
            self._exported.discard(tp)

    def forget_all(self) -> None:
        self.forget({*self._exported, *self._pending_since})

    def _export(self, tp: TopicPartition) -> None:
        if tp not in self._exported:
            self._exported.add(tp)
            m.PROCESSING_DELAY.labels(self.service, tp.topic, str(tp.partition)).set_function(
                lambda: self.delay(tp)
            )


def _record_time(rec: ConsumerRecord) -> float:
    """The record's Kafka timestamp (the producer's create time) in unix seconds; now if it has none."""
    return rec.timestamp / 1000 if rec.timestamp is not None and rec.timestamp >= 0 else time.time()
