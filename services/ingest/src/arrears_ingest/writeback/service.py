"""The write-back queue (Postgres) and its flush to the sheet (gspread `values:batchUpdate`).

Durability: a run's outcomes are queued in the transactions that write their rows (`ingest.writeback`, one
row per target, the newest outcome wins; one transaction per chunk of rows), then flushed after the run. A
flush that fails (sheet down, quota exhausted after gspread's backoff retries, timeout) leaves the rows
queued; the replay loop retries every `ARREARS_INGEST_WRITEBACK_RETRY_S` (not while a run of this process
is still queueing), so no outcome is lost and none needs the failed run to repeat.

Conflict resolution on replay: rows may have moved, been inserted or deleted while the sheet was away, so a
flush first reads the header row and the Account ID column (one `values:batchGet`) and writes each outcome
to the row that holds its account id *now*; an account no longer in the sheet is dropped from the queue.
Rows without an id (`row:<n>` targets) are written only if that row still has no id.

Quota: one read (header + Account ID column) per flush, plus ceil(ranges /
ARREARS_INGEST_WRITEBACK_RANGES_PER_REQUEST) writes per page of PAGE_ROWS queued outcomes (a range
covers consecutive rows), paced to at most ARREARS_SHEETS_WRITES_PER_MINUTE write requests per minute;
429s are retried by the client with exponential backoff. Values are sent RAW (never parsed as formulas).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gspread
from arrears_shared.stream.transaction import Transaction
from gspread.utils import ValueInputOption, rowcol_to_a1
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .. import metrics
from ..runs.service import Chunk, try_advisory_lock
from ..settings import IngestSettings
from ..validation import ValidationConfig
from ..validation.columns import Col, SheetFormatError, map_header
from ..validation.parse import clean
from . import plan

log = logging.getLogger(__name__)
LOCK_KEY = "arrears-ingest-writeback"
PAGE_ROWS = 20_000  # queued outcomes located and written per page of a flush


@dataclass(frozen=True, slots=True)
class FlushResult:
    written: int  # outcomes written
    dropped: int  # outcomes whose row is gone
    requests: int  # write requests sent
    remaining: int  # still queued


class SheetWriteBack:
    def __init__(
        self,
        *,
        engine: AsyncEngine,
        schema: str,
        settings: IngestSettings,
        client: Callable[[], gspread.Worksheet],
        cfg: ValidationConfig,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.engine = engine
        self.schema = schema
        self.settings = settings
        self.worksheet = client
        self.cfg = cfg
        self.sleep = sleep
        self._last_write = 0.0
        self._pace_lock = threading.Lock()
        self._flush_lock = asyncio.Lock()

    # -- queue ---------------------------------------------------------------------------------------
    async def queue(self, tx: Transaction, chunk: Chunk) -> None:
        """In the transaction of each chunk of a run: queue the outcomes the sheet does not show yet."""
        todo = plan.changed_only(
            plan.desired_outcomes(chunk.result), chunk.rows, chunk.header, chunk.first_row_number
        )
        if not todo:
            return
        await tx.conn.execute(
            text(
                f"INSERT INTO {tx.schema}.writeback AS w (target, account_id, row_number, status, reason, "
                "queued_at) SELECT t, a, n, s, r, :now FROM unnest(CAST(:t AS text[]), CAST(:a AS text[]), "
                "CAST(:n AS int[]), CAST(:s AS text[]), CAST(:r AS text[])) AS v(t, a, n, s, r) "
                "ON CONFLICT (target) DO UPDATE SET account_id = EXCLUDED.account_id, "
                "row_number = EXCLUDED.row_number, status = EXCLUDED.status, reason = EXCLUDED.reason, "
                "queued_at = EXCLUDED.queued_at, attempts = 0, last_error = NULL"
            ),
            {
                "t": [d.target for d in todo],
                "a": [d.account_id for d in todo],
                "n": [d.row_number for d in todo],
                "s": [d.status for d in todo],
                "r": [d.reason for d in todo],
                "now": tx.now,
            },
        )

    async def pending(self) -> int:
        async with self.engine.connect() as conn:
            n = int((await conn.execute(text(f"SELECT count(*) FROM {self.schema}.writeback"))).scalar_one())
        metrics.WRITEBACK_PENDING.set(n)
        return n

    async def _load(self, after: tuple[int, str] | None, limit: int) -> list[plan.Desired]:
        """The next `limit` queued outcomes in (row number, target) order, after `after`."""
        where = "" if after is None else "WHERE (row_number, target) > (:n, :t) "
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                text(
                    f"SELECT target, account_id, row_number, status, reason FROM {self.schema}.writeback "
                    f"{where}ORDER BY row_number, target LIMIT :lim"
                ),
                {"lim": limit} | ({} if after is None else {"n": after[0], "t": after[1]}),
            )
            return [plan.Desired(*r) for r in rows.tuples()]

    async def _done(self, items: Sequence[plan.Desired]) -> None:
        """Dequeue written/obsolete outcomes, unless a newer outcome replaced one meanwhile."""
        if not items:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    f"DELETE FROM {self.schema}.writeback w USING unnest(CAST(:t AS text[]), "
                    "CAST(:s AS text[]), CAST(:r AS text[])) AS v(t, s, r) "
                    "WHERE w.target = v.t AND w.status = v.s AND w.reason = v.r"
                ),
                {
                    "t": [d.target for d in items],
                    "s": [d.status for d in items],
                    "r": [d.reason for d in items],
                },
            )

    async def _failed(self, error: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                text(f"UPDATE {self.schema}.writeback SET attempts = attempts + 1, last_error = :e"),
                {"e": error[:500]},
            )

    # -- flush ---------------------------------------------------------------------------------------
    async def flush(self) -> FlushResult:
        """Write every queued outcome to the sheet, `PAGE_ROWS` outcomes at a time (each page locates its
        rows anew, so memory stays bounded on a 100k-row first run). Raises on sheet errors (the queue
        keeps what was not written)."""
        async with self._flush_lock, try_advisory_lock(self.engine, LOCK_KEY) as got:
            if not got:  # another replica is flushing
                return FlushResult(0, 0, 0, await self.pending())
            written = dropped = requests = 0
            after: tuple[int, str] | None = None
            index: _SheetIndex | None = None
            try:
                while items := await self._load(after, PAGE_ROWS):
                    after = (items[-1].row_number, items[-1].target)
                    if index is None:
                        index = await asyncio.to_thread(self._index)
                    w, d, r = await self._flush_page(index, items)
                    written, dropped, requests = written + w, dropped + d, requests + r
            except Exception as e:
                error = f"{type(e).__name__}: {str(e)[:300]}".replace("\n", " ")
                await self._failed(error)
                remaining = await self.pending()
                log.warning(
                    "sheet write-back failed, outcomes stay queued",
                    extra={"error": error, "written": written, "queued": remaining},
                )
                raise
            if after is None:
                metrics.WRITEBACK_PENDING.set(0)
                return FlushResult(0, 0, 0, 0)
            remaining = await self.pending()
            if written or dropped:
                log.info(
                    "sheet write-back flushed",
                    extra={"written": written, "dropped": dropped, "requests": requests},
                )
            return FlushResult(written, dropped, requests, remaining)

    async def _flush_page(self, index: _SheetIndex, items: list[plan.Desired]) -> tuple[int, int, int]:
        """(written, dropped, write requests) of one page of queued outcomes."""
        ws = index.ws
        placed, dropped = self._locate(index, items)
        await self._done(dropped)
        written = requests = 0
        status_col, reason_col, header_writes = placed.columns
        needed = Counter(d.target for b in placed.blocks for d in b.items)
        sent: Counter[str] = Counter()
        chunks = _chunks(placed.blocks, self.settings.ingest_writeback_ranges_per_request)
        for i, chunk in enumerate(chunks):
            data = [{"range": b.a1, "values": b.values} for b in chunk]
            if i == 0:
                data = header_writes + data
            if not data:
                continue
            await asyncio.to_thread(self._write, ws, data)
            index.header_writes = []  # the missing header cells are written now
            requests += 1
            batch = [d for b in chunk for d in b.items]
            sent.update(d.target for d in batch)
            complete = [d for d in batch if sent[d.target] == needed[d.target]]
            await self._done(complete)
            written += len(complete)
            metrics.WRITEBACK_CELLS.inc(sum(len(b.values) * len(b.values[0]) for b in chunk))
        return written, len(dropped), requests

    async def flush_quietly(self) -> FlushResult | None:
        """`flush`, logging instead of raising (the outcomes stay queued for the replay loop)."""
        try:
            return await self.flush()
        except Exception:
            return None

    # -- blocking sheet I/O (worker thread) ------------------------------------------------------------
    def _index(self) -> _SheetIndex:
        """Where things are in the sheet now: the status/reason columns and the row of each account id
        (one `spreadsheets.get`, the header row and the Account ID column: read once per flush)."""
        ws = self.worksheet()
        header_row, id_pos = self._header(ws)
        status_col, reason_col, header_writes = self._status_columns(header_row)
        id_col = id_pos + 1
        got = ws.batch_get([f"{rowcol_to_a1(1, id_col)}:{rowcol_to_a1(ws.row_count, id_col)}"])
        ids = [clean(r[0]) if r else "" for r in got[0]] if got else []
        where: dict[str, int] = {}
        for n, aid in enumerate(ids, start=1):
            if n > 1 and aid and aid not in where:
                where[aid] = n
        return _SheetIndex(ws, ids, where, status_col, reason_col, header_writes)

    @staticmethod
    def _locate(index: _SheetIndex, items: Sequence[plan.Desired]) -> tuple[_Placed, list[plan.Desired]]:
        ids, where = index.ids, index.where
        rows: list[tuple[int, plan.Desired]] = []
        dropped: list[plan.Desired] = []
        for d in items:
            if d.account_id:
                n = where.get(d.account_id)
            else:
                shown = ids[d.row_number - 1] if d.row_number <= len(ids) else ""
                ok = d.row_number <= index.ws.row_count and shown == plan.row_target_id(d.target)
                n = d.row_number if ok else None
            if n is None:
                dropped.append(d)
            else:
                rows.append((n, d))
        columns = (index.status_col, index.reason_col, index.header_writes)
        return _Placed(plan.blocks(rows, index.status_col, index.reason_col), columns), dropped

    def _header(self, ws: gspread.Worksheet) -> tuple[list[str], int]:
        header_row = [str(x) for x in (ws.row_values(1) or [])]
        try:
            hm = map_header(header_row, self.cfg.aliases)
        except SheetFormatError as e:
            raise SheetFormatError(f"cannot write back: {e}") from None
        return header_row, hm.index[Col.ACCOUNT_ID]

    def _status_columns(self, header_row: list[str]) -> tuple[int, int, list[dict[str, Any]]]:
        """1-based columns of Arrears Status / Reason; missing ones are added after the last header."""
        hm = map_header(header_row, self.cfg.aliases)
        writes: list[dict[str, Any]] = []
        next_col = len(header_row) + 1
        cols: list[int] = []
        for col in (Col.ARREARS_STATUS, Col.ARREARS_REASON):
            pos = hm.index.get(col)
            if pos is None:
                writes.append({"range": rowcol_to_a1(1, next_col), "values": [[col.value]]})
                cols.append(next_col)
                next_col += 1
            else:
                cols.append(pos + 1)
        return cols[0], cols[1], writes

    def _write(self, ws: gspread.Worksheet, data: list[dict[str, Any]]) -> None:
        """One `values:batchUpdate`, paced to the configured writes per minute."""
        interval = 60.0 / self.settings.sheets_writes_per_minute
        with self._pace_lock:
            wait = self._last_write + interval - time.monotonic()
            if wait > 0:
                self.sleep(wait)
            self._last_write = time.monotonic()
        ws.batch_update(data, value_input_option=ValueInputOption.raw)


@dataclass(slots=True)
class _SheetIndex:
    ws: gspread.Worksheet
    ids: list[str]  # the Account ID column, row 1 first
    where: dict[str, int]  # account id -> the first row holding it
    status_col: int
    reason_col: int
    header_writes: list[dict[str, Any]]  # header cells to add with the first write


@dataclass(frozen=True, slots=True)
class _Placed:
    blocks: list[plan.CellBlock]
    columns: tuple[int, int, list[dict[str, Any]]]


def _chunks(blocks: list[plan.CellBlock], size: int) -> list[list[plan.CellBlock]]:
    out = [blocks[i : i + size] for i in range(0, len(blocks), size)]
    return out or [[]]
