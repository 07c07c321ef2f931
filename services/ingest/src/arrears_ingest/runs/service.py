"""One ingest run of a source (the sheet, or an upload), end to end.

run lock (sheet: Postgres advisory lock, so one replica at a time) -> record the run -> read the sheet
(worker thread) -> snapshot lock (held for the rest of the run) -> chunk by chunk, `chunk_rows` rows each:
validate (worker thread) -> diff -> one transaction per chunk: snapshot changes + `account-changed` events
+ write-back queue -> a final transaction: removals, the rejects, `ingest-rejected` events, the run row
finished -> metrics. The next chunk is validated while the previous one is being written.

Crash safety: each chunk's transaction writes its snapshot changes together with their events, so the
outbox holds an event if and only if the snapshot holds the change. A run that dies part-way has committed
some chunks and none of the final step; the next run diffs against that snapshot, finds the committed
rows unchanged (no event is repeated) and the others still new or changed (no event is lost), and only
then decides removals and rejects. See docs/ingest.md.

A sheet that cannot be read (API errors, outage, missing header columns) fails the run before any write and
marks the source degraded; the last good snapshot stays as it is, so nothing is removed or re-emitted
because of an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from arrears_shared import paging
from arrears_shared.events import utcnow
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .. import gcpause, metrics, quota
from ..payments import service as payments
from ..snapshot import service as snapshots
from ..validation import AccountRow, Rejection, SheetResult, SheetValidator, ValidationConfig
from ..validation.columns import HeaderMap
from ..validation.pool import ValidationPool
from ..validation.rows import Prepared
from .models import RunSummary, SourceHealth

log = logging.getLogger(__name__)

SOURCE: snapshots.Source = "sheet"
CHUNK_ROWS = 2500
Rows = Iterable[Sequence[Any]]  # header first
Reader = Callable[[], Awaitable[Rows]]
TransactionFactory = Callable[[], contextlib.AbstractAsyncContextManager[Transaction]]


class RunInProgress(RuntimeError):
    """Another run of the same source holds the lock (this or another replica)."""


@contextlib.asynccontextmanager
async def try_advisory_lock(engine: AsyncEngine, key: str) -> AsyncIterator[bool]:
    """Session-level advisory lock held on a dedicated connection for the duration of the block."""
    async with engine.connect() as conn:
        got = bool(
            (await conn.execute(text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": key})).scalar()
        )
        await conn.commit()
        try:
            yield got
        finally:
            if got:
                await conn.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": key})
                await conn.commit()


async def start_run(
    engine: AsyncEngine, schema: str, run_id: str, trigger: str, started: datetime, source: str = SOURCE
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                f"INSERT INTO {schema}.runs (id, source, trigger, started, status) "
                "VALUES (CAST(:id AS uuid), :s, :t, :st, 'running')"
            ),
            {"id": run_id, "s": source, "t": trigger, "st": started},
        )


async def record_quota(
    engine: AsyncEngine, schema: str, run_id: str, waited_s: float, *, degraded: bool
) -> None:
    """How long the run waited out the Sheets quota, and whether the source was degraded during it."""
    async with engine.begin() as conn:
        await conn.execute(
            text(f"UPDATE {schema}.runs SET quota_waited_s = :q, degraded = :d WHERE id = CAST(:id AS uuid)"),
            {"id": run_id, "q": round(waited_s, 3), "d": degraded},
        )


async def fail_run(engine: AsyncEngine, schema: str, run_id: str, error: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                f"UPDATE {schema}.runs SET status = 'failed', finished = now(), error = :e "
                "WHERE id = CAST(:id AS uuid)"
            ),
            {"id": run_id, "e": error[:1000]},
        )


@dataclass(slots=True)
class Outcome:
    """The counts of a run (as stored in its `ingest.runs` row)."""

    rows: int = 0
    accepted: int = 0  # accepted rows, unchanged ones included
    rejected: int = 0  # rejected rows
    unchanged: int = 0
    created: int = 0
    updated: int = 0
    removed: int = 0
    warnings: int = 0


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk of a run, as handed to the `on_chunk` hook inside the chunk's transaction."""

    header: HeaderMap
    rows: Sequence[Sequence[Any]]  # the chunk's sheet rows, from row number `first_row_number` on
    first_row_number: int
    result: SheetResult  # accepted rows (pending payments applied), unchanged rows, rejections


# Called inside each chunk's transaction (e.g. to queue sheet write-backs atomically with the rows).
OnChunk = Callable[[Transaction, Chunk], Awaitable[None]]


@dataclass(slots=True)
class _Validated:
    rows: list[Sequence[Any]]
    first_row_number: int
    result: SheetResult
    snap: dict[str, snapshots.SnapEntry]


def _take(
    it: Iterator[Sequence[Any]], n: int, validator: SheetValidator, first: int
) -> tuple[list, Prepared]:
    rows = list(itertools.islice(it, n))
    return rows, validator.prepare(rows, first)


async def ingest_values(
    engine: AsyncEngine,
    transaction: TransactionFactory,
    schema: str,
    values: Rows,
    cfg: ValidationConfig,
    *,
    run_id: str,
    as_of: datetime,
    source: snapshots.Source = SOURCE,
    removal: snapshots.Removal = "sheet",
    on_chunk: OnChunk | None = None,
    chunk_rows: int = CHUNK_ROWS,
    pool: ValidationPool | None = None,
) -> Outcome:
    """Validate `values` (header first), diff against the snapshot and write it all, chunk by chunk (see
    the module doc). The caller holds the snapshot lock (`snapshots.hold_snapshot`). Raises
    `SheetFormatError` for a sheet without a usable header, before anything is written."""
    it = iter(values)
    validator = SheetValidator(await asyncio.to_thread(next, it, None), cfg)
    pool = pool or ValidationPool(cfg, workers=0)
    now = utcnow()
    out = Outcome()
    rejections: list[Rejection] = []
    ready: asyncio.Queue[_Validated | Exception | None] = asyncio.Queue(maxsize=1)

    producer = asyncio.create_task(_validate_chunks(engine, schema, it, validator, pool, chunk_rows, ready))
    try:
        while (item := await ready.get()) is not None:
            if isinstance(item, Exception):
                raise item
            rejections.extend(item.result.rejections)
            await _write_chunk(transaction, item, validator, out, now, as_of, run_id, source, on_chunk)
            del item  # the chunk's rows, events and JSON are garbage now
    finally:
        if not producer.done():
            producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer

    async with transaction() as tx:
        await _finish_run(tx, schema, validator, rejections, out, now, as_of, run_id, source, removal)
    return out


async def _validate_chunks(
    engine: AsyncEngine,
    schema: str,
    it: Iterator[Sequence[Any]],
    validator: SheetValidator,
    pool: ValidationPool,
    chunk_rows: int,
    ready: asyncio.Queue[_Validated | Exception | None],
) -> None:
    """Read + validate chunk k+1 while chunk k is being written (validation runs in a worker thread;
    the snapshot entries come from a connection of their own). Puts each chunk on `ready`, then None at
    the end, or the exception that stopped it (the writer raises it)."""
    try:
        first = 2
        async with engine.connect() as conn:
            while True:
                rows, prepared = await asyncio.to_thread(_take, it, chunk_rows, validator, first)
                if not rows:
                    break
                snap = await snapshots.load_entries(conn, schema, prepared.account_ids)
                await conn.commit()

                def known(account_id: str, raw: str, snap: dict[str, snapshots.SnapEntry] = snap) -> bool:
                    e = snap.get(account_id)
                    return e is not None and e.raw_hash == raw

                todo = validator.pending(prepared, known)
                items = [(c.cells, c.row_number, c.rhash) for c in todo]
                parsed = await pool.validate(items, validator.channels)
                by_row = {c.row_number: v for c, v in zip(todo, parsed, strict=True)}
                result = validator.validate(prepared, known, by_row)
                await ready.put(_Validated(rows, first, result, snap))
                first += len(rows)
        await ready.put(None)
    except Exception as e:  # handed to the writer, which raises it
        await ready.put(e)


async def _finish_run(
    tx: Transaction,
    schema: str,
    validator: SheetValidator,
    rejections: list[Rejection],
    out: Outcome,
    now: datetime,
    as_of: datetime,
    run_id: str,
    source: snapshots.Source,
    removal: snapshots.Removal,
) -> None:
    """The run's final transaction: removals (accounts no longer in the source), the rejects, their
    events, and the run row marked succeeded with its counts."""
    conn = tx.conn
    gone = await snapshots.absent(conn, schema, validator.first_row, removal)
    deleted = await snapshots.delete_rows(conn, schema, gone)
    known_rejects = await snapshots.reject_keys(conn, schema, source)
    await snapshots.replace_rejects(conn, schema, source, run_id, rejections, now)
    for account_id, row_number, content_hash, data in deleted:
        tx.emit(
            snapshots.removed_event(account_id, row_number, content_hash, data, as_of, source),
            id=f"{run_id}:{account_id}",
            time=now,
        )
    for i, rej in enumerate(rejections):
        if snapshots.reject_key(rej) not in known_rejects:  # a reject already reported is not repeated
            tx.emit(snapshots.rejected_event(rej, run_id, now, source), id=f"{run_id}:reject:{i}", time=now)
    out.removed = len(deleted)
    await _mark_succeeded(conn, schema, run_id, out)


async def _mark_succeeded(conn: AsyncConnection, schema: str, run_id: str, out: Outcome) -> None:
    await conn.execute(
        text(
            f"UPDATE {schema}.runs SET status = 'succeeded', finished = :f, rows = :rows, accepted = :acc, "
            "rejected = :rej, unchanged = :unch, created = :c, updated = :u, removed = :r, warnings = :w "
            "WHERE id = CAST(:id AS uuid)"
        ),
        {
            "id": run_id,
            "f": utcnow(),
            "rows": out.rows,
            "acc": out.accepted,
            "rej": out.rejected,
            "unch": out.unchanged,
            "c": out.created,
            "u": out.updated,
            "r": out.removed,
            "w": out.warnings,
        },
    )


async def _write_chunk(
    transaction: TransactionFactory,
    item: _Validated,
    validator: SheetValidator,
    out: Outcome,
    now: datetime,
    as_of: datetime,
    run_id: str,
    source: snapshots.Source,
    on_chunk: OnChunk | None,
) -> None:
    """One chunk's transaction: snapshot changes, their `account-changed` events, the `on_chunk` hook."""
    result = item.result
    async with transaction() as tx:
        conn, schema = tx.conn, tx.schema
        result.accepted = await payments.adjust_rows(conn, schema, result.accepted, now)
        plan = snapshots.plan(result, item.snap)
        # sealed once: the snapshot entry and the event of a row share the ciphertexts of its personal fields
        sealers = await snapshots.write_rows(
            conn, schema, [*plan.created, *plan.updated, *plan.refreshed], now, source
        )
        await snapshots.move_rows(conn, schema, plan.moved)
        kinds: tuple[tuple[Literal["created", "updated"], list[AccountRow]], ...] = (
            ("created", plan.created),
            ("updated", plan.updated),
        )
        for kind, rows in kinds:
            tx.records.extend(
                snapshots.account_record(
                    row,
                    kind,
                    as_of,
                    source,
                    ce_source=tx.source,
                    id=f"{run_id}:{row.account_id}",
                    time=now,
                    seal=sealers[row.account_id],
                )
                for row in rows
            )
        if on_chunk is not None:
            await on_chunk(tx, Chunk(validator.header, item.rows, item.first_row_number, result))
    # counted once the chunk is committed
    out.rows += result.rows
    out.accepted += len(result.accepted) + len(result.unchanged)
    out.rejected += result.rejected_rows
    out.unchanged += plan.unchanged
    out.created += len(plan.created)
    out.updated += len(plan.updated)
    out.warnings += result.warnings


async def get_run(engine: AsyncEngine, schema: str, run_id: str) -> RunSummary:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(f"SELECT * FROM {schema}.runs WHERE id = CAST(:id AS uuid)"), {"id": run_id}
            )
        ).one()
    return _summary(row._mapping)


async def list_runs(
    engine: AsyncEngine, schema: str, limit: int = 50, cursor: str | None = None
) -> tuple[list[RunSummary], str | None]:
    """One page of runs, newest first, and the cursor of the next page."""
    after, params = paging.after_sql(cursor, (("started", datetime), ("id::text", str)))
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(f"SELECT * FROM {schema}.runs WHERE {after} ORDER BY started DESC, id::text DESC LIMIT :n"),
            {"n": limit + 1, **params},
        )
        found, nxt = paging.page(rows.all(), limit, lambda r: (r.started, str(r.id)))
        return [_summary(r._mapping) for r in found], nxt


def _summary(m: Any) -> RunSummary:
    return RunSummary.model_validate({**m, "id": str(m["id"])})


async def source_health(engine: AsyncEngine, schema: str, source: str = SOURCE) -> SourceHealth:
    """Degraded = the latest finished run failed; since = the first failure after the last success.
    Read from `ingest.runs`, so every replica reports the same state whichever replica ran."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    f"""WITH last_ok AS (
                          SELECT max(started) AS t, max(finished) AS f FROM {schema}.runs
                          WHERE source = :s AND status = 'succeeded'),
                        latest AS (
                          SELECT status, error FROM {schema}.runs
                          WHERE source = :s AND status <> 'running' ORDER BY started DESC LIMIT 1)
                        SELECT (SELECT status FROM latest), (SELECT error FROM latest), (SELECT f FROM last_ok),
                          (SELECT min(started) FROM {schema}.runs WHERE source = :s AND status = 'failed'
                             AND started > coalesce((SELECT t FROM last_ok), '-infinity'))"""
                ),
                {"s": source},
            )
        ).one()
    status, error, last_success, first_failure = row
    if status is None:
        return SourceHealth(source=source, state="never_run")
    if status == "failed":
        return SourceHealth(
            source=source,
            state="degraded",
            degraded_since=first_failure,
            last_success=last_success,
            last_error=error,
        )
    return SourceHealth(source=source, state="ok", last_success=last_success)


# Called after the run committed (e.g. to flush the queued write-backs to the sheet).
AfterCommit = Callable[[], Awaitable[object]]


class SourceRun:
    """One run of a source: run row -> read -> validate/diff/write chunk by chunk -> metrics + log.
    A failure of the read fails the run before anything is written; a failure later fails it with the
    chunks committed so far in place (consistent with their events; the next run carries on from them)."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        schema: str,
        cfg: ValidationConfig,
        transaction: TransactionFactory,
        source: snapshots.Source,
        chunk_rows: int = CHUNK_ROWS,
        pool: ValidationPool | None = None,
    ) -> None:
        self.engine = engine
        self.pool = pool or ValidationPool(cfg, workers=0)
        self.schema = schema
        self.cfg = cfg
        self.transaction = transaction
        self.source = source
        self.chunk_rows = chunk_rows
        self.degraded = False

    async def execute(
        self,
        trigger: str,
        read: Reader,
        *,
        removal: snapshots.Removal,
        on_chunk: OnChunk | None = None,
    ) -> RunSummary:
        source = self.source
        run_id = str(uuid.uuid4())
        started = utcnow()
        t0 = time.monotonic()
        await start_run(self.engine, self.schema, run_id, trigger, started, source)
        phases: dict[str, float] = {}
        with quota.measure() as waited:
            failed = await self._run(run_id, started, t0, read, removal, on_chunk, phases)
        # degraded: it waited for the Sheets quota, or (the sheet) could not be read at all
        if waited.seconds > 0 or (failed and source == SOURCE):
            await record_quota(self.engine, self.schema, run_id, waited.seconds, degraded=True)
        summary = await get_run(self.engine, self.schema, run_id)
        if failed:
            return summary
        # (LogRecord reserves names such as `created`, hence the prefix)
        log.info(
            f"{source} ingested",
            extra={
                f"run_{k}": getattr(summary, k)
                for k in ("rows", "accepted", "rejected", "created", "updated", "removed", "warnings")
            }
            | {"run_id": run_id, "seconds": round(time.monotonic() - t0, 3), "quota_waited_s": waited.seconds}
            | {k: round(v, 3) for k, v in phases.items()},
        )
        return summary

    async def _run(
        self,
        run_id: str,
        started: datetime,
        t0: float,
        read: Reader,
        removal: snapshots.Removal,
        on_chunk: OnChunk | None,
        phases: dict[str, float],
    ) -> bool:
        """Read, validate and write; True if the run failed (recorded as such)."""
        source = self.source
        try:
            values = await read()
            phases["read_s"] = time.monotonic() - t0
            async with snapshots.hold_snapshot(self.engine):
                phases["lock_s"] = time.monotonic() - t0 - phases["read_s"]
                with gcpause.paused():
                    outcome = await ingest_values(
                        self.engine,
                        self.transaction,
                        self.schema,
                        values,
                        self.cfg,
                        run_id=run_id,
                        as_of=started,
                        source=source,
                        removal=removal,
                        on_chunk=on_chunk,
                        chunk_rows=self.chunk_rows,
                        pool=self.pool,
                    )
            phases["write_s"] = time.monotonic() - t0 - phases["read_s"] - phases["lock_s"]
        except Exception as e:
            error = f"{type(e).__name__}: {str(e)[:300]}".replace("\n", " ")
            await fail_run(self.engine, self.schema, run_id, error)
            if source == SOURCE:  # an unreadable upload is the uploader's error, not a degraded source
                metrics.DEGRADED.labels(source).set(1)
                log.warning(
                    "sheet source degraded, keeping the last good snapshot",
                    extra={"run_id": run_id, "error": error, "first_failure": not self.degraded},
                )
                self.degraded = True
            else:
                log.warning(f"{source} run failed", extra={"run_id": run_id, "error": error})
            return True
        finally:
            metrics.RUN_SECONDS.labels(source).observe(time.monotonic() - t0)
        if source == SOURCE:
            metrics.DEGRADED.labels(source).set(0)
        metrics.LAST_SUCCESS.labels(source).set(time.time())
        metrics.ROWS.labels(source, "accepted").inc(outcome.accepted)
        metrics.ROWS.labels(source, "rejected").inc(outcome.rejected)
        for change, n in (
            ("created", outcome.created),
            ("updated", outcome.updated),
            ("removed", outcome.removed),
        ):
            metrics.CHANGES.labels(source, change).inc(n)
        if self.degraded:
            log.info(f"{source} source recovered", extra={"run_id": run_id})
        self.degraded = False
        return False


class SheetIngestor(SourceRun):
    """Runs the sheet source: shared by the poll loop and `POST /ingest/sheet`. One run at a time across
    replicas (session advisory lock); a second caller gets `RunInProgress`."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        schema: str,
        cfg: ValidationConfig,
        read: Reader,
        transaction: TransactionFactory,
        lock_key: str = "arrears-ingest-sheet",
        on_chunk: OnChunk | None = None,
        after_commit: AfterCommit | None = None,
        chunk_rows: int = CHUNK_ROWS,
        pool: ValidationPool | None = None,
    ) -> None:
        super().__init__(
            engine=engine,
            schema=schema,
            cfg=cfg,
            transaction=transaction,
            source=SOURCE,
            chunk_rows=chunk_rows,
            pool=pool,
        )
        self.read = read
        self.lock_key = lock_key
        self.on_chunk = on_chunk
        self.after_commit = after_commit
        self.running = False  # a run of this process is in progress (its write-backs are still queueing)

    async def run(self, trigger: str) -> RunSummary:
        """Run now. Raises `RunInProgress` if another run holds the lock."""
        async with try_advisory_lock(self.engine, self.lock_key) as got:
            if not got:
                raise RunInProgress("an ingest run of the sheet is already in progress")
            self.running = True
            try:
                summary = await self.execute(trigger, self.read, removal="sheet", on_chunk=self.on_chunk)
            finally:
                self.running = False
        # outside the run lock: a slow write-back (quota backoff) must not block the next run
        if summary.status == "succeeded" and self.after_commit is not None:
            with gcpause.paused():
                await self.after_commit()
        return summary


class UploadIngestor(SourceRun):
    """Runs of CSV/XLSX uploads (`merge`: create/update only; `replace`: the file is the whole master
    sheet, absent accounts are removed). Accepted while the sheet is degraded: that is their purpose."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        schema: str,
        cfg: ValidationConfig,
        transaction: TransactionFactory,
        chunk_rows: int = CHUNK_ROWS,
        pool: ValidationPool | None = None,
    ) -> None:
        super().__init__(
            engine=engine,
            schema=schema,
            cfg=cfg,
            transaction=transaction,
            source="upload",
            chunk_rows=chunk_rows,
            pool=pool,
        )

    async def run(
        self, trigger: str, values: list[list[str]], mode: Literal["merge", "replace"]
    ) -> RunSummary:
        async def read() -> list[list[str]]:
            return values

        return await self.execute(trigger, read, removal="all" if mode == "replace" else "none")
