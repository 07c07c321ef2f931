"""StreamRunner: the consumer-group loop every service uses.

Per poll: decode -> claim ids in the inbox -> handler -> outbox, all in ONE Postgres transaction for the
batch -> commit offsets (last offset + 1 per partition) only after that transaction committed.

Failure modes:
- a record that is not a valid CloudEvent of a known type is dead-lettered at once (no retry);
- if the batch transaction raises, records are retried one at a time with exponential backoff and jitter;
  a record still failing after `runner_retry_attempts` goes to `<topic>.<group>.dlq`, the others commit,
  so one poison record never stops its partition;
- infrastructure errors (database or network down) are retried without limit and never dead-lettered:
  the partition waits, readiness turns red, nothing is lost;
- a crash anywhere before the offset commit redelivers the batch; the inbox makes that a no-op;
- on rebalance nothing is in flight (batches are processed between polls), so revocation needs no commit;
  a `CommitFailedError` after a long batch only causes a redelivery, which the inbox absorbs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord
from sqlalchemy.ext.asyncio import AsyncEngine

from .. import telemetry as m
from ..cloudevents import Envelope, Erased, InvalidEvent, OutgoingRecord, decode
from ..redact import describe_error
from ..settings import ServiceSettings
from ..vault.keys import Keys, vault
from ..vault.records import needs_opening
from . import inbox, outbox
from .backoff import backoff
from .dead_letter import REPLAY_FOR_GROUP, Failure, dead_letter, is_infrastructure_error
from .membership import Listener, RunnerState, close_after_cancel
from .partition_metrics import PartitionMetrics
from .transaction import Transaction

log = logging.getLogger(__name__)

BatchHandler = Callable[[Sequence[Envelope], Transaction], Awaitable[None]]


class StreamRunner:
    def __init__(
        self,
        *,
        group: str,
        topics: Sequence[str],
        handler: BatchHandler,
        engine: AsyncEngine,
        schema: str,
        settings: ServiceSettings,
        service: str | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        """`on_commit` is called after each transaction that wrote outbox rows (the service host passes the
        relay's `wake`, so events go out at once instead of at the relay's next poll)."""
        self.on_commit = on_commit
        self.group = group
        self.topics = list(topics)
        self.handler = handler
        self.engine = engine
        self.schema = schema
        self.settings = settings
        self.service = service or group
        self.state = RunnerState()
        self.partition_metrics = PartitionMetrics(self.service, owns=lambda tp: tp in self.state.assigned)
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._last_lag_update = 0.0

    # -- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        self._consumer = AIOKafkaConsumer(
            group_id=self.group,
            client_id=f"{self.service}-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=s.runner_max_poll_interval_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=16 * 1024 * 1024,
            **s.kafka_client_kwargs(),
        )
        self._consumer.subscribe(
            self.topics, listener=Listener(self.state, self.group, self.partition_metrics)
        )
        await self._consumer.start()

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, commit it and leave the group."""
        self._stopping.set()

    async def run(self) -> None:
        cancelled = False
        try:
            if self._consumer is None:
                # aiokafka's start() waits for the first partition assignment, which can take a whole
                # rebalance: a stop arriving meanwhile ends in a cancellation here, and the consumer must
                # still be closed
                await self.start()
            consumer = self._consumer
            assert consumer is not None
            while not self._stopping.is_set():
                batch = await self._poll(consumer)
                if batch:
                    self.partition_metrics.polled(batch)
                    records = [r for recs in batch.values() for r in recs]
                    if not await self.process(records):
                        break  # stopping while the infrastructure was down: leave uncommitted
                    await self._commit(consumer, batch)
                    self.partition_metrics.processed(batch)
                    self.state.last_progress = time.monotonic()
                await self._update_lag(consumer, batch)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            # a run restarted after a crash (the service host's supervisor) starts a new consumer
            leaving, self._consumer = self._consumer, None
            self.partition_metrics.forget_all()  # a stopped consumer owns nothing (no revoke callback on stop)
            if leaving is not None:
                await (close_after_cancel(leaving) if cancelled else leaving.stop())

    async def _poll(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list[ConsumerRecord]]:
        """One batch: wait for the first records, then linger briefly to fill the batch (bigger transactions
        are far cheaper per record), bounded by `runner_max_batch` and `runner_batch_linger_ms`."""
        s = self.settings
        batch = await consumer.getmany(timeout_ms=s.runner_poll_timeout_ms, max_records=s.runner_max_batch)
        total = sum(len(v) for v in batch.values())
        if not total:
            return batch
        deadline = time.monotonic() + s.runner_batch_linger_ms / 1000
        while total < s.runner_max_batch and not self._stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            more = await consumer.getmany(timeout_ms=int(left * 1000), max_records=s.runner_max_batch - total)
            for tp, recs in more.items():
                batch.setdefault(tp, []).extend(recs)
                total += len(recs)
        return batch

    # -- processing ------------------------------------------------------------------------------------
    async def process(self, records: Sequence[ConsumerRecord]) -> bool:
        """Apply one polled batch. Returns False only if asked to stop while waiting for infrastructure."""
        valid: list[tuple[ConsumerRecord, Envelope]] = []
        dead: list[Failure] = []
        for topic, n in Counter(r.topic for r in records).items():
            m.EVENTS_CONSUMED.labels(self.service, topic).inc(n)
        mine = [rec for rec in records if self._addressed_to_us(rec)]
        keys = await self._keys_for(mine)
        if keys is None:
            return False
        for rec in mine:
            try:
                valid.append((rec, decode(rec.headers, rec.value, keys)))
            except InvalidEvent as e:
                dead.append(Failure(rec, e, 1))
            except Erased:
                m.EVENTS_ERASED.labels(self.service, rec.topic).inc()
        attempt = 0
        while True:
            try:
                await self._apply(valid, [dead_letter(f, group=self.group) for f in dead])
                self._count_dead(dead)
                return True
            except Exception as e:
                if is_infrastructure_error(e):
                    attempt += 1
                    if not await self._wait_for_infrastructure(e, attempt):
                        return False
                    continue
                for topic, n in Counter(r.topic for r, _ in valid).items():
                    m.EVENTS_FAILED.labels(self.service, topic).inc(n)
                log.warning(
                    "batch failed, retrying record by record",
                    extra={"group": self.group, "records": len(valid), "error": type(e).__name__},
                )
                break
        return await self._process_one_by_one(valid, dead)

    async def _keys_for(self, records: Sequence[ConsumerRecord]) -> Keys | None:
        """The data keys that open the batch's sealed personal fields (one query for the batch, cached
        briefly by the vault); None if asked to stop while the database is unavailable."""
        subjects = {s for r in records if (s := needs_opening(r.headers, r.value)) is not None}
        if not subjects:
            return {}
        attempt = 0
        while True:
            try:
                async with self.engine.connect() as conn:
                    return await vault().for_reading(conn, subjects)
            except Exception as e:
                if not is_infrastructure_error(e):
                    raise
                attempt += 1
                if not await self._wait_for_infrastructure(e, attempt):
                    return None

    def _addressed_to_us(self, rec: ConsumerRecord) -> bool:
        """A DLQ replay names the group that failed the record; every other group on the topic skips it."""
        for k, v in rec.headers or ():
            if k == REPLAY_FOR_GROUP:
                return bool(v is not None and v.decode("utf-8", "replace") == self.group)
        return True

    async def _process_one_by_one(
        self, valid: list[tuple[ConsumerRecord, Envelope]], dead: list[Failure]
    ) -> bool:
        s = self.settings
        for item in valid:
            attempts, infra_waits = 1, 0
            while True:
                try:
                    await self._apply([item], [])
                    break
                except Exception as e:
                    if is_infrastructure_error(e):
                        infra_waits += 1
                        if not await self._wait_for_infrastructure(e, infra_waits):
                            return False
                        continue
                    m.EVENTS_FAILED.labels(self.service, item[0].topic).inc()
                    attempts += 1
                    if attempts > s.runner_retry_attempts:
                        log.error(
                            "record dead-lettered",
                            extra={
                                "group": self.group,
                                "topic": item[0].topic,
                                "partition": item[0].partition,
                                "offset": item[0].offset,
                                "ce_id": item[1].id,
                                "error": describe_error(e),
                            },
                        )
                        dead.append(Failure(item[0], e, attempts - 1))
                        break
                    await asyncio.sleep(self._backoff(attempts - 1))
        infra_waits = 0
        while True:
            try:
                await self._apply([], [dead_letter(f, group=self.group) for f in dead])
                self._count_dead(dead)
                return True
            except Exception as e:
                infra_waits += 1
                if not await self._wait_for_infrastructure(e, infra_waits):
                    return False

    async def _apply(
        self, items: Sequence[tuple[ConsumerRecord, Envelope]], dlq: Sequence[OutgoingRecord]
    ) -> None:
        started = time.perf_counter()
        async with self.engine.begin() as conn:
            fresh: list[Envelope] = []
            if items:
                claimed = await inbox.claim(
                    conn, self.schema, [e.id for _, e in items], [r.topic for r, _ in items]
                )
                for rec, env in items:
                    if env.id in claimed:
                        claimed.discard(env.id)  # a ce_id repeated inside one batch is applied once
                        fresh.append(env)
                    else:
                        m.EVENTS_DUPLICATE.labels(self.service, rec.topic).inc()
            tx = Transaction(conn, self.schema, self.service)
            if fresh:
                await self.handler(fresh, tx)
            out = [*tx.records, *dlq]
            await outbox.write(conn, self.schema, out)
        if out and self.on_commit is not None:
            self.on_commit()
        if items:
            m.HANDLER_SECONDS.labels(self.service, items[0][0].topic).observe(time.perf_counter() - started)
        self.state.waiting_on_infrastructure = None

    async def _wait_for_infrastructure(self, e: BaseException, attempt: int) -> bool:
        self.state.waiting_on_infrastructure = describe_error(e)
        delay = self._backoff(attempt)
        log.warning(
            "infrastructure unavailable, will retry",
            extra={
                "group": self.group,
                "error": self.state.waiting_on_infrastructure,
                "retry_in_s": round(delay, 2),
            },
        )
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)
            return False
        except TimeoutError:
            return True

    def _backoff(self, attempt: int) -> float:
        return backoff(attempt, self.settings.runner_retry_base_s, self.settings.runner_retry_max_s)

    def _count_dead(self, dead: Sequence[Failure]) -> None:
        for f in dead:
            m.EVENTS_DEAD_LETTERED.labels(self.service, f.record.topic).inc()

    async def _commit(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        offsets = {tp: recs[-1].offset + 1 for tp, recs in batch.items() if recs}
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as e:
            # The group rebalanced under us: the batch will be redelivered and the inbox makes it a no-op.
            log.warning("offset commit failed; batch will be redelivered", extra={"error": describe_error(e)})

    async def _update_lag(
        self, consumer: AIOKafkaConsumer, batch: dict[TopicPartition, list[ConsumerRecord]]
    ) -> None:
        now = time.monotonic()
        if not batch and now - self._last_lag_update < 1.0:
            return
        self._last_lag_update = now
        for tp in consumer.assignment():
            hw = consumer.highwater(tp)
            if hw is None:
                continue
            try:
                pos = await consumer.position(tp)
            except KafkaError:
                continue
            if tp not in self.state.assigned:
                continue  # revoked by a rebalance while awaiting the position: its new owner reports it
            lag = max(0, hw - pos)
            self.state.lag[tp] = lag
            self.partition_metrics.lag(tp, lag)
