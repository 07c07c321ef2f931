"""Change detection and the run bookkeeping against real PostgreSQL (the ingest schema via Alembic)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from arrears_ingest import metrics, quota
from arrears_ingest.runs.service import (
    CHUNK_ROWS,
    Chunk,
    OnChunk,
    RunInProgress,
    SheetIngestor,
    get_run,
    source_health,
    try_advisory_lock,
)
from arrears_ingest.validation import ValidationConfig
from arrears_shared.cloudevents import Envelope
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.events import AccountChanged, IngestRejected
from arrears_shared.stream.transaction import Transaction, transaction
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from . import support
from .sheetdata import HEADER, account_row, sheet

SCHEMA = "ingest"


@pytest.fixture(scope="module")
def ingest_url(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("ingest_runs")
    upgrade(url, "ingest")
    return url


@pytest.fixture
async def engine(ingest_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(ingest_url, pool_size=4)
    async with eng.begin() as c:
        await c.execute(text(f"TRUNCATE {SCHEMA}.snapshot, {SCHEMA}.rejects, {SCHEMA}.runs, {SCHEMA}.outbox"))
    yield eng
    await eng.dispose()


class FakeSheet:
    """What the reader returns; `error` simulates an unreadable sheet (API outage)."""

    def __init__(self, values: list[list[str]]) -> None:
        self.values = values
        self.error: Exception | None = None

    async def read(self) -> list[list[str]]:
        if self.error is not None:
            raise self.error
        return [list(r) for r in self.values]


def make_ingestor(
    engine: AsyncEngine,
    src: FakeSheet,
    cfg: ValidationConfig | None = None,
    *,
    chunk_rows: int = CHUNK_ROWS,
    on_chunk: OnChunk | None = None,
) -> SheetIngestor:
    return SheetIngestor(
        engine=engine,
        schema=SCHEMA,
        cfg=cfg or ValidationConfig(),
        read=src.read,
        transaction=lambda: transaction(engine, SCHEMA, "ingest"),
        chunk_rows=chunk_rows,
        on_chunk=on_chunk,
    )


async def outbox_since(engine: AsyncEngine, after: int) -> tuple[int, list[Envelope]]:
    """The events after outbox id `after`, personal fields opened with the vault's keys (as a consumer)."""
    return await support.outbox_since(engine, after, SCHEMA)


def changes(envs: list[Envelope]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in envs:
        if isinstance(e.data, AccountChanged):
            out.setdefault(e.data.change, []).append(e.data.account_id)
    return out


async def scalar(engine: AsyncEngine, sql: str) -> Any:
    async with engine.connect() as c:
        return (await c.execute(text(sql))).scalar()


# every run commits chunk by chunk: the default (one chunk here) and chunks much smaller than the sheet
CHUNKINGS = pytest.mark.parametrize("chunk_rows", [CHUNK_ROWS, 3], ids=["one-chunk", "3-row-chunks"])


@CHUNKINGS
async def test_create_unchanged_update_remove(engine: AsyncEngine, chunk_rows: int) -> None:
    src = FakeSheet(sheet(50))
    ing = make_ingestor(engine, src, chunk_rows=chunk_rows)

    first = await ing.run("test")
    assert (first.status, first.rows, first.accepted, first.created) == ("succeeded", 50, 50, 50)
    pos, envs = await outbox_since(engine, 0)
    assert len(envs) == 50 and changes(envs) == {"created": [f"ACC-{i:06d}" for i in range(1, 51)]}
    assert all(e.subject == e.data.account_id and e.type == "arrears.account.changed.v1" for e in envs)
    assert await scalar(engine, f"SELECT count(*) FROM {SCHEMA}.snapshot") == 50

    second = await ing.run("test")
    assert (second.created, second.updated, second.removed, second.unchanged) == (0, 0, 0, 50)
    pos, envs = await outbox_since(engine, pos)
    assert envs == []

    src.values[10] = account_row(10, Balance="$999.99")  # row 11 holds ACC-000010
    third = await ing.run("test")
    pos, envs = await outbox_since(engine, pos)
    assert (third.updated, third.created, third.removed) == (1, 0, 0)
    assert changes(envs) == {"updated": ["ACC-000010"]}
    assert envs[0].data.balance_minor == 99999  # type: ignore[attr-defined]

    del src.values[20]  # ACC-000020 leaves the sheet, later rows move up one row
    fourth = await ing.run("test")
    pos, envs = await outbox_since(engine, pos)
    assert (fourth.removed, fourth.updated, fourth.created) == (1, 0, 0)
    assert changes(envs) == {"removed": ["ACC-000020"]}
    removed = envs[0].data
    assert isinstance(removed, AccountChanged) and removed.customer_name == "Customer 20"
    assert removed.source_row == 21
    assert (
        await scalar(engine, f"SELECT row_number FROM {SCHEMA}.snapshot WHERE account_id = 'ACC-000050'")
        == 50
    )

    src.values.append(account_row(20))  # back again: created anew
    fifth = await ing.run("test")
    _, envs = await outbox_since(engine, pos)
    assert fifth.created == 1 and changes(envs) == {"created": ["ACC-000020"]}
    ids = [e.id for e in envs]
    assert len(set(ids)) == len(ids)


async def test_notes_only_change_refreshes_without_event(engine: AsyncEngine) -> None:
    src = FakeSheet(sheet(3))
    ing = make_ingestor(engine, src)
    await ing.run("test")
    pos, _ = await outbox_since(engine, 0)
    src.values[1] = account_row(1, Notes="left voicemail", Balance="11.01")  # same amount as "$11.01"
    summary = await ing.run("test")
    assert (summary.updated, summary.unchanged) == (0, 3)
    _, envs = await outbox_since(engine, pos)
    assert envs == []
    stored, opened = await support.stored_snapshot(engine, "ACC-000001", SCHEMA)
    assert opened["notes"] == "left voicemail"
    assert stored["notes"].startswith("pii1:") and "voicemail" not in json.dumps(stored)


@CHUNKINGS
async def test_rejects_are_stored_emitted_and_replaced(engine: AsyncEngine, chunk_rows: int) -> None:
    values = sheet(5)
    values[2] = account_row(2, Balance="lots")  # row 3
    values.append(account_row(99, **{"Account ID": "", "Balance": "$5,000.00"}))  # row 7, no id
    values.append(account_row(1))  # row 8, duplicate of row 2 (another chunk when chunks are 3 rows)
    src = FakeSheet(values)
    ing = make_ingestor(engine, src, chunk_rows=chunk_rows)
    summary = await ing.run("test")
    assert (summary.rows, summary.accepted, summary.rejected) == (7, 4, 3)
    _, envs = await outbox_since(engine, 0)
    rejected = [e.data for e in envs if isinstance(e.data, IngestRejected)]
    assert sorted((r.row_number, r.column) for r in rejected) == [
        (3, "Balance"),
        (7, "Account ID"),
        (8, "Account ID"),
    ]
    assert {r.account_id for r in rejected} == {"ACC-000002", "row:7", "ACC-000001"}
    assert all(r.batch_id == summary.id and r.reason for r in rejected)
    async with engine.connect() as c:
        stored = (
            await c.execute(
                text(
                    f"SELECT row_number, balance_minor FROM {SCHEMA}.rejects "
                    "ORDER BY balance_minor DESC NULLS LAST, row_number"
                )
            )
        ).all()
    assert [tuple(r) for r in stored] == [(7, 500000), (3, None), (8, None)]

    src.values[2] = account_row(2)  # fixed
    again = await ing.run("test")
    assert again.rejected == 2 and again.created == 1
    assert await scalar(engine, f"SELECT count(*) FROM {SCHEMA}.rejects") == 2
    assert await scalar(engine, f"SELECT count(DISTINCT batch_id) FROM {SCHEMA}.rejects") == 1


async def test_rejected_row_of_a_known_account_is_not_removed(engine: AsyncEngine) -> None:
    src = FakeSheet(sheet(3))
    ing = make_ingestor(engine, src)
    await ing.run("test")
    pos, _ = await outbox_since(engine, 0)
    src.values[2] = account_row(2, **{"Due Date": "someday"})
    summary = await ing.run("test")
    assert (summary.removed, summary.rejected) == (0, 1)
    _, envs = await outbox_since(engine, pos)
    assert [type(e.data) for e in envs] == [IngestRejected]
    assert await scalar(engine, f"SELECT count(*) FROM {SCHEMA}.snapshot") == 3


async def test_unreadable_sheet_keeps_snapshot_and_marks_degraded(engine: AsyncEngine) -> None:
    src = FakeSheet(sheet(4))
    ing = make_ingestor(engine, src)
    await ing.run("test")
    pos, _ = await outbox_since(engine, 0)
    assert (await source_health(engine, SCHEMA)).state == "ok"

    src.error = ConnectionError("sheets.googleapis.com unreachable")
    failed = await ing.run("test")
    assert failed.status == "failed" and "ConnectionError" in (failed.error or "")
    health = await source_health(engine, SCHEMA)
    assert health.state == "degraded" and health.degraded_since == failed.started
    assert health.detail().startswith("degraded since ")
    assert metrics.DEGRADED.labels("sheet")._value.get() == 1
    # a sheet whose header lost a required column is not ingested either (it would remove everything)
    src.error = None
    src.values = [[h for h in HEADER if h != "Due Date"]]
    again = await ing.run("test")
    assert again.status == "failed" and "Due Date" in (again.error or "")
    assert (await source_health(engine, SCHEMA)).degraded_since == failed.started
    _, envs = await outbox_since(engine, pos)
    assert envs == []
    assert await scalar(engine, f"SELECT count(*) FROM {SCHEMA}.snapshot") == 4
    assert failed.degraded and again.degraded and failed.quota_waited_s == 0  # unreadable: degraded

    src.values = sheet(4)
    ok = await ing.run("test")
    assert (ok.status, ok.unchanged, ok.created) == ("succeeded", 4, 0)
    assert not ok.degraded
    assert (await source_health(engine, SCHEMA)).state == "ok"
    assert metrics.DEGRADED.labels("sheet")._value.get() == 0
    assert metrics.LAST_SUCCESS.labels("sheet")._value.get() > time.time() - 60


async def test_run_records_the_quota_wait_of_its_own_read(engine: AsyncEngine) -> None:
    """The Sheets client reports each 429 wait from the reading thread; the run that read is charged with it
    (`quota_waited_s`, `degraded`), a wait outside any run (the write-back's) with nothing."""
    src = FakeSheet(sheet(3))
    plain = src.read

    async def read_after_a_quota_wait() -> list[list[str]]:
        await asyncio.to_thread(quota.record, 0.25)  # as SheetReader._quota_wait does, in the worker thread
        return await plain()

    ing = make_ingestor(engine, src)
    normal = await ing.run("test")
    assert (normal.status, normal.degraded, normal.quota_waited_s) == ("succeeded", False, 0.0)
    ing.read = read_after_a_quota_wait
    waited = await ing.run("test")
    assert (waited.status, waited.degraded, waited.quota_waited_s) == ("succeeded", True, 0.25)
    quota.record(5.0)  # outside a run: counted nowhere
    assert (await get_run(engine, SCHEMA, waited.id)).quota_waited_s == 0.25


async def test_one_run_at_a_time(engine: AsyncEngine) -> None:
    ing = make_ingestor(engine, FakeSheet(sheet(1)))
    async with try_advisory_lock(engine, ing.lock_key) as got:
        assert got
        with pytest.raises(RunInProgress):
            await ing.run("test")
    assert (await ing.run("test")).status == "succeeded"


async def test_concurrent_runs_emit_once(engine: AsyncEngine) -> None:
    src = FakeSheet(sheet(200))
    ings = [make_ingestor(engine, src) for _ in range(3)]
    results = await asyncio.gather(*(i.run("test") for i in ings), return_exceptions=True)
    ok = [r for r in results if not isinstance(r, BaseException)]
    assert all(isinstance(r, RunInProgress) for r in results if isinstance(r, BaseException))
    assert sum(r.created for r in ok) == 200
    _, envs = await outbox_since(engine, 0)
    assert len(envs) == 200


@pytest.mark.parametrize(
    ("n", "rerun_budget_s"), [(10_000, 2.0), pytest.param(100_000, 6.0, marks=pytest.mark.slow)]
)
async def test_rerun_diff_is_fast(engine: AsyncEngine, n: int, rerun_budget_s: float) -> None:
    """A poll of a big, mostly unchanged sheet: bulk snapshot load + raw-row hashes + set-based writes."""
    src = FakeSheet(sheet(n))
    ing = make_ingestor(engine, src)
    t0 = time.monotonic()
    first = await ing.run("test")
    first_s = time.monotonic() - t0
    assert first.created == n
    for i in range(1, n, n // 10):
        src.values[i] = account_row(i, Balance="$1.23")
    t0 = time.monotonic()
    second = await ing.run("test")
    second_s = time.monotonic() - t0
    assert second.updated == 10 and second.unchanged == n - 10
    print(f"\n{n} rows: first run {first_s:.2f}s, re-run with 10 changes {second_s:.2f}s")
    assert second_s < rerun_budget_s


async def test_10k_fuzzed_sheet_every_row_stored_accepted_or_rejected(engine: AsyncEngine) -> None:
    """Through the database: each data row is in the snapshot (accepted) or in the rejects table with a
    reason, and the outbox holds exactly one created event per accepted account and one ingest-rejected
    per reject."""
    from .test_golden import fuzzed_sheet

    values = fuzzed_sheet(10_000, seed=7)
    run = await make_ingestor(engine, FakeSheet(values)).run("test")
    assert run.status == "succeeded", run.error
    async with engine.connect() as c:
        snap_rows = {r for (r,) in await c.execute(text(f"SELECT row_number FROM {SCHEMA}.snapshot"))}
        rej = (await c.execute(text(f"SELECT row_number, reason FROM {SCHEMA}.rejects"))).all()
    rej_rows = {r for r, _ in rej}
    assert all(reason for _, reason in rej)
    assert not snap_rows & rej_rows
    assert len(snap_rows) + len(rej_rows) + run.rows - run.accepted - run.rejected == run.rows
    blank = sum(1 for row in values[1:] if not any(str(c).strip() for c in row[: len(HEADER)]))
    assert len(snap_rows) + len(rej_rows) + blank == len(values) - 1
    _, envs = await outbox_since(engine, 0)
    kinds = [type(e.data).__name__ for e in envs]
    assert kinds.count("AccountChanged") == len(snap_rows)
    assert kinds.count("IngestRejected") == len(rej)


class Crash(RuntimeError):
    """Stands for the process dying in the middle of a chunk's transaction."""


async def test_crash_mid_run_loses_nothing_and_repeats_nothing(engine: AsyncEngine) -> None:
    """A run that dies after committing some chunks: those chunks' snapshot rows and events are in
    (together), the rest and the final step (removals, rejects) are not; the next run emits exactly the
    missing events, so across both runs every account has one `created`, the reject one `ingest-rejected`
    and the account that left the sheet one `removed`."""
    await make_ingestor(engine, FakeSheet(sheet(1, start=999))).run("test")  # ACC-000999, to be removed
    pos, _ = await outbox_since(engine, 0)
    values = sheet(50)
    values[25] = account_row(25, Balance="lots")  # row 26: rejected
    src = FakeSheet(values)
    chunks: list[int] = []

    async def crash_in_third_chunk(tx: Transaction, chunk: Chunk) -> None:
        chunks.append(chunk.first_row_number)
        if len(chunks) == 3:
            raise Crash("killed")

    failed = await make_ingestor(engine, src, chunk_rows=10, on_chunk=crash_in_third_chunk).run("test")
    assert failed.status == "failed" and "Crash" in (failed.error or "")
    assert chunks == [2, 12, 22]
    pos, envs = await outbox_since(engine, pos)
    first_ids = changes(envs)["created"]
    assert first_ids == [f"ACC-{i:06d}" for i in range(1, 21)]  # rows 2-21: the two committed chunks
    assert changes(envs).keys() == {"created"}  # no reject, no removal yet
    assert await scalar(engine, f"SELECT count(*) FROM {SCHEMA}.snapshot") == 21  # 20 + ACC-000999

    rerun = await make_ingestor(engine, src, chunk_rows=10).run("test")
    assert rerun.status == "succeeded", rerun.error
    assert (rerun.unchanged, rerun.created, rerun.rejected, rerun.removed) == (20, 29, 1, 1)
    _, envs = await outbox_since(engine, pos)
    assert changes(envs) == {
        "created": [f"ACC-{i:06d}" for i in range(21, 51) if i != 25],
        "removed": ["ACC-000999"],
    }
    assert [e.data.row_number for e in envs if isinstance(e.data, IngestRejected)] == [26]
    assert await scalar(engine, f"SELECT count(*) FROM {SCHEMA}.snapshot") == 49


async def test_chunk_boundaries_change_nothing(engine: AsyncEngine) -> None:
    """A 12,345-row sheet with bad rows (and a duplicate id) in different chunks gives the same snapshot,
    the same events and the same rejects, with their row numbers, whether it is ingested in one chunk or
    in chunks of 1,000 (the default is 2,500: the bad rows sit in several chunks either way)."""
    values = sheet(12_345)
    bad = {2: {"Balance": "lots"}, 1001: {"Due Date": "soon"}, 1002: {"Account ID": ""}}
    bad |= {5001: {"Currency": "DOLLARS"}, 9999: {"Status": "maybe"}, 12_346: {"Customer Name": ""}}
    for row_number, override in bad.items():
        values[row_number - 1] = account_row(row_number - 1, **override)
    values[7000 - 1] = account_row(1500)  # a duplicate of row 1501's account id, in a later chunk

    outcomes: list[tuple[Any, ...]] = []
    for chunk_rows in (20_000, 1000):
        async with engine.begin() as c:
            await c.execute(text(f"TRUNCATE {SCHEMA}.snapshot, {SCHEMA}.rejects, {SCHEMA}.outbox"))
        run = await make_ingestor(engine, FakeSheet(values), chunk_rows=chunk_rows).run("test")
        assert run.status == "succeeded", run.error
        _, envs = await outbox_since(engine, 0)
        events = sorted(
            (type(e.data).__name__, e.data.model_dump_json(exclude={"as_of", "batch_id", "rejected_at"}))
            for e in envs
        )
        async with engine.connect() as c:
            snap = sorted(
                (
                    await c.execute(
                        text(f"SELECT account_id, row_number, content_hash FROM {SCHEMA}.snapshot")
                    )
                ).tuples()
            )
            rejects = sorted(
                (
                    await c.execute(
                        text(f'SELECT row_number, account_id, "column", reason FROM {SCHEMA}.rejects')
                    )
                ).tuples()
            )
        outcomes.append((run.rows, run.accepted, run.rejected, run.created, events, snap, rejects))
    assert outcomes[0] == outcomes[1]
    rows, accepted, rejected, created, events, snap, rejects = outcomes[0]
    assert (rows, rejected, accepted, created) == (12_345, 7, 12_338, 12_338)
    assert [r[0] for r in rejects] == [2, 1001, 1002, 5001, 7000, 9999, 12_346]
    assert rejects[4][1:] == ("ACC-001500", "Account ID", "duplicate Account ID: first seen on row 1501")
    assert sum(1 for kind, _ in events if kind == "IngestRejected") == 7
    assert len(snap) == 12_338
