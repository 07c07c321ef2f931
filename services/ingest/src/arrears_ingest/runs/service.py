"""One ingest run of the sheet source, end to end.

lock (Postgres advisory lock, so one replica at a time) -> record the run -> read the sheet (worker
thread) -> one transaction: load snapshot, validate (worker thread), diff, bulk-write snapshot + rejects,
events to the outbox, run row finished -> metrics.

A sheet that cannot be read (API errors, outage, missing header columns) fails the run and marks the source
degraded; the last good snapshot stays as it is, so nothing is removed or re-emitted because of an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from arrears_shared.events import utcnow
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .. import metrics
from ..payments import service as payments
from ..snapshot import service as snapshots
from ..validation import SheetResult, ValidationConfig, validate_sheet
from .models import RunSummary, SourceHealth

log = logging.getLogger(__name__)

SOURCE = "sheet"
Reader = Callable[[], Awaitable[list[list[str]]]]
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
    result: SheetResult
    created: int
    updated: int
    removed: int


async def ingest_values(
    tx: Transaction,
    values: Sequence[Sequence[Any]],
    cfg: ValidationConfig,
    *,
    run_id: str,
    as_of: datetime,
    source: snapshots.Source = SOURCE,
    removal: snapshots.Removal = "sheet",
) -> Outcome:
    """Validate `values` (header first), diff against the snapshot and write everything in `tx`:
    snapshot changes, the source's rejects (replaced), `account-changed` and `ingest-rejected` events.
    Raises `SheetFormatError` for a sheet without a usable header (the transaction then rolls back).
    Holds the snapshot lock until `tx` ends, so runs of different sources and payments never interleave."""
    conn, schema = tx.conn, tx.schema
    await snapshots.lock_snapshot(conn)
    snap = await snapshots.load_snapshot(conn, schema)

    def known(account_id: str, raw: str) -> bool:
        e = snap.get(account_id)
        return e is not None and e.raw_hash == raw

    result = await asyncio.to_thread(validate_sheet, values, cfg, known)
    now = utcnow()
    result.accepted = await payments.adjust_rows(conn, schema, result.accepted, now)
    plan = snapshots.plan(result, snap, removal)
    await snapshots.write_rows(conn, schema, [*plan.created, *plan.updated, *plan.refreshed], now, source)
    await snapshots.move_rows(conn, schema, plan.moved)
    deleted = await snapshots.delete_rows(conn, schema, plan.removed)
    known_rejects = await snapshots.reject_keys(conn, schema, source)
    await snapshots.replace_rejects(conn, schema, source, run_id, result.rejections, now)

    for kind, rows in (("created", plan.created), ("updated", plan.updated)):
        for row in rows:
            tx.emit(
                snapshots.account_event(row, kind, as_of, source), id=f"{run_id}:{row.account_id}", time=now
            )
    for account_id, row_number, content_hash, data in deleted:
        tx.emit(
            snapshots.removed_event(account_id, row_number, content_hash, data, as_of, source),
            id=f"{run_id}:{account_id}",
            time=now,
        )
    for i, rej in enumerate(result.rejections):
        if snapshots.reject_key(rej) not in known_rejects:  # a reject already reported is not repeated
            tx.emit(snapshots.rejected_event(rej, run_id, now, source), id=f"{run_id}:reject:{i}", time=now)

    await conn.execute(
        text(
            f"UPDATE {schema}.runs SET status = 'succeeded', finished = :f, rows = :rows, accepted = :acc, "
            "rejected = :rej, unchanged = :unch, created = :c, updated = :u, removed = :r, warnings = :w "
            "WHERE id = CAST(:id AS uuid)"
        ),
        {
            "id": run_id,
            "f": utcnow(),
            "rows": result.rows,
            "acc": len(result.accepted) + len(result.unchanged),
            "rej": result.rejected_rows,
            "unch": plan.unchanged,
            "c": len(plan.created),
            "u": len(plan.updated),
            "r": len(deleted),
            "w": result.warnings,
        },
    )
    return Outcome(result, len(plan.created), len(plan.updated), len(deleted))


async def get_run(engine: AsyncEngine, schema: str, run_id: str) -> RunSummary:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(f"SELECT * FROM {schema}.runs WHERE id = CAST(:id AS uuid)"), {"id": run_id}
            )
        ).one()
    return _summary(row._mapping)


async def list_runs(engine: AsyncEngine, schema: str, limit: int = 50) -> list[RunSummary]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(f"SELECT * FROM {schema}.runs ORDER BY started DESC LIMIT :n"), {"n": limit}
        )
        return [_summary(r._mapping) for r in rows]


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


# Called inside the run's transaction after a successful diff (e.g. to queue sheet write-backs atomically).
OnSuccess = Callable[[Transaction, Sequence[Sequence[Any]], Outcome], Awaitable[None]]
# Called after the run's transaction committed (e.g. to flush those write-backs to the sheet).
AfterCommit = Callable[[], Awaitable[None]]


class SourceRun:
    """One run of a source: run row -> read -> validate/diff/commit (one transaction) -> metrics + log.
    A failure of the read or of the commit records a failed run and leaves the snapshot untouched."""

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        schema: str,
        cfg: ValidationConfig,
        transaction: TransactionFactory,
        source: snapshots.Source,
    ) -> None:
        self.engine = engine
        self.schema = schema
        self.cfg = cfg
        self.transaction = transaction
        self.source = source
        self.degraded = False

    async def execute(
        self,
        trigger: str,
        read: Reader,
        *,
        removal: snapshots.Removal,
        on_success: OnSuccess | None = None,
        after_commit: AfterCommit | None = None,
    ) -> RunSummary:
        source = self.source
        run_id = str(uuid.uuid4())
        started = utcnow()
        t0 = time.monotonic()
        await start_run(self.engine, self.schema, run_id, trigger, started, source)
        phases: dict[str, float] = {}
        try:
            values = await read()
            phases["read_s"] = time.monotonic() - t0
            async with self.transaction() as tx:
                outcome = await ingest_values(
                    tx, values, self.cfg, run_id=run_id, as_of=started, source=source, removal=removal
                )
                if on_success is not None:
                    await on_success(tx, values, outcome)
                phases["diff_s"] = time.monotonic() - t0 - phases["read_s"]
            phases["commit_s"] = time.monotonic() - t0 - phases["read_s"] - phases["diff_s"]
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
            return await get_run(self.engine, self.schema, run_id)
        finally:
            metrics.RUN_SECONDS.labels(source).observe(time.monotonic() - t0)
        r = outcome.result
        if source == SOURCE:
            metrics.DEGRADED.labels(source).set(0)
        metrics.LAST_SUCCESS.labels(source).set(time.time())
        metrics.ROWS.labels(source, "accepted").inc(len(r.accepted) + len(r.unchanged))
        metrics.ROWS.labels(source, "rejected").inc(r.rejected_rows)
        for change, n in (
            ("created", outcome.created),
            ("updated", outcome.updated),
            ("removed", outcome.removed),
        ):
            metrics.CHANGES.labels(source, change).inc(n)
        if self.degraded:
            log.info(f"{source} source recovered", extra={"run_id": run_id})
        self.degraded = False
        if after_commit is not None:
            await after_commit()
        summary = await get_run(self.engine, self.schema, run_id)
        # (LogRecord reserves names such as `created`, hence the prefix)
        log.info(
            f"{source} ingested",
            extra={
                f"run_{k}": getattr(summary, k)
                for k in ("rows", "accepted", "rejected", "created", "updated", "removed", "warnings")
            }
            | {"run_id": run_id, "seconds": round(time.monotonic() - t0, 3)}
            | {k: round(v, 3) for k, v in phases.items()},
        )
        return summary


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
        on_success: OnSuccess | None = None,
        after_commit: AfterCommit | None = None,
    ) -> None:
        super().__init__(engine=engine, schema=schema, cfg=cfg, transaction=transaction, source=SOURCE)
        self.read = read
        self.lock_key = lock_key
        self.on_success = on_success
        self.after_commit = after_commit

    async def run(self, trigger: str) -> RunSummary:
        """Run now. Raises `RunInProgress` if another run holds the lock."""
        async with try_advisory_lock(self.engine, self.lock_key) as got:
            if not got:
                raise RunInProgress("an ingest run of the sheet is already in progress")
            summary = await self.execute(trigger, self.read, removal="sheet", on_success=self.on_success)
        # outside the run lock: a slow write-back (quota backoff) must not block the next run
        if summary.status == "succeeded" and self.after_commit is not None:
            await self.after_commit()
        return summary


class UploadIngestor(SourceRun):
    """Runs of CSV/XLSX uploads (`merge`: create/update only; `replace`: the file is the whole master
    sheet, absent accounts are removed). Accepted while the sheet is degraded: that is their purpose."""

    def __init__(
        self, *, engine: AsyncEngine, schema: str, cfg: ValidationConfig, transaction: TransactionFactory
    ) -> None:
        super().__init__(engine=engine, schema=schema, cfg=cfg, transaction=transaction, source="upload")

    async def run(
        self, trigger: str, values: list[list[str]], mode: Literal["merge", "replace"]
    ) -> RunSummary:
        async def read() -> list[list[str]]:
            return values

        return await self.execute(trigger, read, removal="all" if mode == "replace" else "none")
