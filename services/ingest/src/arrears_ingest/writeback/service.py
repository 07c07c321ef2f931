"""The write-back queues (Postgres) and their flush to the sheet (gspread `values:batchUpdate`).

Two things are written back: each row's outcome (Arrears Status / Arrears Reason, queued by runs in
`ingest.writeback`) and each account's contact facts (Last Contact, Last Reply, Intent, Promise: kept in
`ingest.contact_facts` from `message-sent` / `reply-received`, pending while `version > written_version`).
One flush writes both, sharing one read of the sheet's header and Account ID column.

Durability: a run's outcomes are queued in the transactions that write their rows (`ingest.writeback`, one
row per target, the newest outcome wins; one transaction per chunk of rows), then flushed after the run. A
flush that fails (sheet down, quota exhausted after gspread's backoff retries, timeout) leaves the rows
queued; the replay loop retries every `ARREARS_INGEST_WRITEBACK_RETRY_S` (not while a run of this process
is still queueing), so no outcome is lost and none needs the failed run to repeat.

Conflict resolution on replay: rows may have moved, been inserted or deleted while the sheet was away, so a
flush first reads the header row and the Account ID column (one `values:batchGet`) and writes each outcome
to the row that holds its account id *now*; an account no longer in the sheet is dropped from the queue.
Rows without an id (`row:<n>` targets) are written only if that row still has no id. Contact facts of an
account that is not in the sheet are marked `unplaced` (not retried) until a run validates that account's
row again (then they are pending once more).

Quota: one read (header + Account ID column) per flush, plus ceil(ranges /
ARREARS_INGEST_WRITEBACK_RANGES_PER_REQUEST) writes per page of PAGE_ROWS queued outcomes (a range
covers consecutive rows), at most ARREARS_SHEETS_WRITES_PER_MINUTE write requests in any minute;
429s are retried by the client with exponential backoff. Values are sent RAW (never parsed as formulas).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import gspread
from arrears_shared.stream.transaction import Transaction
from gspread.utils import ValueInputOption, rowcol_to_a1
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .. import metrics
from ..contacts import service as contacts
from ..contacts.models import Facts
from ..runs.service import Chunk, try_advisory_lock
from ..settings import ContactFact, IngestSettings
from ..validation import ValidationConfig
from ..validation.columns import Col, SheetFormatError, header_key, map_header
from ..validation.parse import clean
from . import plan
from .pacing import WriteWindow

log = logging.getLogger(__name__)
LOCK_KEY = "arrears-ingest-writeback"
B = TypeVar("B")
PAGE_ROWS = 20_000  # queued outcomes located and written per page of a flush


@dataclass(frozen=True, slots=True)
class FlushResult:
    written: int  # outcomes and contact facts written
    dropped: int  # outcomes whose row is gone, contact facts of accounts not in the sheet
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
        wake_event: asyncio.Event | None = None,
    ) -> None:
        self.engine = engine
        self.schema = schema
        self.settings = settings
        self.worksheet = client
        self.cfg = cfg
        self.sleep = sleep
        self.contact_columns: dict[ContactFact, str] = settings.contact_columns()
        self.woken = wake_event or asyncio.Event()  # set when contact facts changed
        self._pacer = WriteWindow(settings.sheets_writes_per_minute, 60.0, sleep=lambda s: self.sleep(s))
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
        """Outcomes queued plus accounts whose contact facts the sheet does not show yet."""
        async with self.engine.connect() as conn:
            n = int((await conn.execute(text(f"SELECT count(*) FROM {self.schema}.writeback"))).scalar_one())
            n += await contacts.count_pending(conn, self.schema)
        metrics.WRITEBACK_PENDING.set(n)
        return n

    def wake(self) -> None:
        """Contact facts changed: the replay loop flushes after `ARREARS_INGEST_WRITEBACK_CONTACT_DELAY_S`."""
        self.woken.set()

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
                if index is not None and self.contact_columns:
                    await self._revive_unplaced(index)
                after_account: str | None = None
                while facts := await self._load_facts(after_account, PAGE_ROWS):
                    after_account = facts[-1].account_id
                    if index is None:
                        index = await asyncio.to_thread(self._index)
                    w, d, r = await self._flush_facts(index, facts)
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
            if index is None:  # nothing was queued
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
        needed = Counter(d.target for b in placed.blocks for d in b.items)
        sent: Counter[str] = Counter()
        chunks = _chunks(placed.blocks, self.settings.ingest_writeback_ranges_per_request)
        for chunk in chunks:
            data = [{"range": b.a1, "values": b.values} for b in chunk]
            if not data:
                continue
            await asyncio.to_thread(self._write, ws, index.header_writes + data)
            index.header_writes = []  # the missing header cells are written now
            requests += 1
            batch = [d for b in chunk for d in b.items]
            sent.update(d.target for d in batch)
            complete = [d for d in batch if sent[d.target] == needed[d.target]]
            await self._done(complete)
            written += len(complete)
            metrics.WRITEBACK_CELLS.inc(sum(len(b.values) * len(b.values[0]) for b in chunk))
        return written, len(dropped), requests

    async def _revive_unplaced(self, index: _SheetIndex) -> None:
        """Facts of accounts that had no row in the sheet and have one now are pending again."""
        async with self.engine.begin() as conn:
            await contacts.revive_unplaced(conn, self.schema, index.where.keys())

    async def _load_facts(self, after: str | None, limit: int) -> list[Facts]:
        if not self.contact_columns:
            return []
        async with self.engine.connect() as conn:
            return await contacts.load_pending(conn, self.schema, after, limit)

    async def _flush_facts(self, index: _SheetIndex, facts: list[Facts]) -> tuple[int, int, int]:
        """(written, unplaced, write requests) of one page of pending contact facts: every fact column of
        each account's row, in ranges of consecutive rows × adjacent columns."""
        fields = list(self.contact_columns)
        cols = [index.column(self.contact_columns[f]) for f in fields]
        rows: list[tuple[int, list[str], Facts]] = []
        unplaced: list[Facts] = []
        for f in facts:
            n = index.where.get(f.account_id)
            if n is None:
                unplaced.append(f)
            else:
                rows.append((n, [f.cell(x) for x in fields], f))
        async with self.engine.begin() as conn:
            await contacts.mark_written(conn, self.schema, unplaced, unplaced=True)
        blocks = plan.grid_blocks(rows, cols)
        needed = Counter(f.account_id for b in blocks for f in b.items)
        sent: Counter[str] = Counter()
        written = requests = 0
        for chunk in _chunks(blocks, self.settings.ingest_writeback_ranges_per_request):
            data = [{"range": b.a1, "values": b.values} for b in chunk]
            if not data:
                continue
            await asyncio.to_thread(self._write, index.ws, index.header_writes + data)
            index.header_writes = []
            requests += 1
            batch = [f for b in chunk for f in b.items]
            sent.update(f.account_id for f in batch)
            complete = list(
                {f.account_id: f for f in batch if sent[f.account_id] == needed[f.account_id]}.values()
            )
            async with self.engine.begin() as conn:
                await contacts.mark_written(conn, self.schema, complete)
            written += len(complete)
            metrics.WRITEBACK_CELLS.inc(sum(len(b.values) * len(b.values[0]) for b in chunk))
        return written, len(unplaced), requests

    async def flush_quietly(self) -> FlushResult | None:
        """`flush`, logging instead of raising (the outcomes stay queued for the replay loop)."""
        try:
            return await self.flush()
        except Exception:
            return None

    # -- blocking sheet I/O (worker thread) ------------------------------------------------------------
    def _index(self) -> _SheetIndex:
        """Where things are in the sheet now: the header row and the row of each account id (one
        `spreadsheets.get`, the header row and the Account ID column: read once per flush). Write-back
        columns are located (or added after the last header) when first needed."""
        ws = self.worksheet()
        header_row, id_pos = self._header(ws)
        id_col = id_pos + 1
        got = ws.batch_get([f"{rowcol_to_a1(1, id_col)}:{rowcol_to_a1(ws.row_count, id_col)}"])
        ids = [clean(r[0]) if r else "" for r in got[0]] if got else []
        where: dict[str, int] = {}
        for n, aid in enumerate(ids, start=1):
            if n > 1 and aid and aid not in where:
                where[aid] = n
        status_pos = self._status_positions(header_row)
        return _SheetIndex(ws, ids, where, header_row, status_pos)

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
        if not rows:
            return _Placed([]), dropped
        status_col, reason_col = index.status_columns()
        return _Placed(plan.blocks(rows, status_col, reason_col)), dropped

    def _header(self, ws: gspread.Worksheet) -> tuple[list[str], int]:
        header_row = [str(x) for x in (ws.row_values(1) or [])]
        try:
            hm = map_header(header_row, self.cfg.aliases)
        except SheetFormatError as e:
            raise SheetFormatError(f"cannot write back: {e}") from None
        return header_row, hm.index[Col.ACCOUNT_ID]

    def _status_positions(self, header_row: list[str]) -> tuple[int | None, int | None]:
        """0-based positions of Arrears Status / Reason in the header (None = absent)."""
        hm = map_header(header_row, self.cfg.aliases)
        return hm.index.get(Col.ARREARS_STATUS), hm.index.get(Col.ARREARS_REASON)

    def _write(self, ws: gspread.Worksheet, data: list[dict[str, Any]]) -> None:
        """One `values:batchUpdate`, at most the configured writes in any minute (`pacing`)."""
        self._pacer.acquire()
        ws.batch_update(data, value_input_option=ValueInputOption.raw)


@dataclass(slots=True)
class _SheetIndex:
    ws: gspread.Worksheet
    ids: list[str]  # the Account ID column, row 1 first
    where: dict[str, int]  # account id -> the first row holding it
    header: list[str]  # the header row as read
    status_pos: tuple[int | None, int | None]  # 0-based Arrears Status / Reason positions, None = absent
    header_writes: list[dict[str, Any]] = field(
        default_factory=list
    )  # header cells to add with the next write
    added: dict[str, int] = field(default_factory=dict)  # header key -> column added by this flush

    def column(self, name: str, pos: int | None = None) -> int:
        """1-based column of the header `name` (`pos`: its known 0-based position; otherwise matched like
        headers are, case/space/punctuation-insensitively). A missing one is added after the last header
        (written with the next write request)."""
        key = header_key(name)
        if pos is None:
            pos = next((i for i, h in enumerate(self.header) if header_key(h) == key), None)
        if pos is not None:
            return pos + 1
        if key not in self.added:
            col = len(self.header) + len(self.added) + 1
            self.added[key] = col
            self.header_writes.append({"range": rowcol_to_a1(1, col), "values": [[name]]})
        return self.added[key]

    def status_columns(self) -> tuple[int, int]:
        s, r = self.status_pos
        return self.column(Col.ARREARS_STATUS.value, s), self.column(Col.ARREARS_REASON.value, r)


@dataclass(frozen=True, slots=True)
class _Placed:
    blocks: list[plan.CellBlock]


def _chunks(blocks: list[B], size: int) -> list[list[B]]:
    out = [blocks[i : i + size] for i in range(0, len(blocks), size)]
    return out or [[]]
