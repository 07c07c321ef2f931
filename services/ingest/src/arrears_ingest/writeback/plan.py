"""What to write back: pure functions from a run's result and the sheet's current cells to cell updates.

A row's outcome is `accepted`, `accepted with warnings` (reason lists them: a dropped phone, an unknown
time zone...) or `rejected` (reason lists every failed column). Rows the run did not re-validate (cells
unchanged) are left alone, and a cell that already holds the desired text is not written, so an unchanged
sheet costs no writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from gspread.utils import rowcol_to_a1

from ..validation import AccountRow, Rejection, SheetResult
from ..validation.columns import Col, HeaderMap

ACCEPTED, WARNINGS, REJECTED = "accepted", "accepted with warnings", "rejected"
MAX_REASON = 500
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Desired:
    """One row's desired outcome cells. `target` = `id:<account id>`, or `row:<n>` for rows without id."""

    target: str
    account_id: str | None
    row_number: int
    status: str
    reason: str


def target_of(account_id: str | None, row_number: int) -> str:
    """`id:<account>`; rows located by position carry the id cell they must still show:
    `row:<n>:` (no id) or `row:<n>:<id>` (a duplicate id)."""
    return f"id:{account_id}" if account_id else f"row:{row_number}:"


def row_target_id(target: str) -> str:
    """The id cell a `row:` target expects at its row ("" = empty)."""
    return target.split(":", 2)[2] if target.count(":") >= 2 else ""


def _accepted(row: AccountRow) -> Desired:
    reason = "; ".join(f"{w.column}: {w.reason}" for w in row.warnings)[:MAX_REASON]
    return Desired(
        target_of(row.account_id, row.row_number),
        row.account_id,
        row.row_number,
        WARNINGS if row.warnings else ACCEPTED,
        reason,
    )


def _rejected(rejections: Iterable[Rejection]) -> list[Desired]:
    by_row: dict[int, list[Rejection]] = {}
    for r in rejections:
        by_row.setdefault(r.row_number, []).append(r)
    out = []
    for n, rs in by_row.items():
        reason = "; ".join(f"{r.column}: {r.reason}" if r.column else r.reason for r in rs)[:MAX_REASON]
        # a duplicate id is keyed by its row (and the id it shows): the id's own target is the first row
        dup = any(r.reason.startswith("duplicate Account ID") for r in rs)
        aid = None if dup else rs[0].account_id
        target = target_of(aid, n) if aid or not rs[0].account_id else f"row:{n}:{rs[0].account_id}"
        out.append(Desired(target, aid, n, REJECTED, reason))
    return out


def desired_outcomes(result: SheetResult) -> list[Desired]:
    return [*(_accepted(a) for a in result.accepted), *_rejected(result.rejections)]


def changed_only(
    desired: Iterable[Desired], values: Sequence[Sequence[object]], header: HeaderMap, first_row: int = 1
) -> list[Desired]:
    """Drop outcomes the sheet already shows. `values` are sheet rows from row number `first_row` on
    (the whole sheet, header included, by default; one chunk of a run otherwise)."""
    s_pos, r_pos = header.index.get(Col.ARREARS_STATUS), header.index.get(Col.ARREARS_REASON)

    def cell(row: int, pos: int | None) -> str:
        if pos is None or not 0 <= row - first_row < len(values):
            return ""
        cells = values[row - first_row]
        return str(cells[pos]).strip() if pos < len(cells) and cells[pos] is not None else ""

    return [
        d for d in desired if cell(d.row_number, s_pos) != d.status or cell(d.row_number, r_pos) != d.reason
    ]


@dataclass(frozen=True, slots=True)
class CellBlock:
    """A rectangular `values:batchUpdate` entry: consecutive sheet rows, status/reason columns."""

    a1: str
    values: list[list[str]]
    items: tuple[Desired, ...]


def blocks(rows: Sequence[tuple[int, Desired]], status_col: int, reason_col: int) -> list[CellBlock]:
    """Group (sheet row, outcome) pairs into as few ranges as possible (1-based columns). Adjacent
    columns (the usual layout) give one range per run of consecutive rows; otherwise two ranges."""
    ordered = sorted(rows, key=lambda x: x[0])
    runs: list[list[tuple[int, Desired]]] = []
    for item in ordered:
        if runs and item[0] == runs[-1][-1][0] + 1:
            runs[-1].append(item)
        else:
            runs.append([item])
    out: list[CellBlock] = []
    for run in runs:
        first, last = run[0][0], run[-1][0]
        items = tuple(d for _, d in run)
        if reason_col == status_col + 1:
            a1 = f"{rowcol_to_a1(first, status_col)}:{rowcol_to_a1(last, reason_col)}"
            out.append(CellBlock(a1, [[d.status, d.reason] for d in items], items))
        else:
            for col, pick in ((status_col, 0), (reason_col, 1)):
                a1 = f"{rowcol_to_a1(first, col)}:{rowcol_to_a1(last, col)}"
                out.append(CellBlock(a1, [[(d.status, d.reason)[pick]] for d in items], items))
    return out


@dataclass(frozen=True, slots=True)
class GridBlock(Generic[T]):
    """A rectangular `values:batchUpdate` entry over any set of columns: consecutive sheet rows ×
    adjacent columns. `items` are the queued things its rows come from."""

    a1: str
    values: list[list[str]]
    items: tuple[T, ...]


def grid_blocks(rows: Sequence[tuple[int, Sequence[str], T]], cols: Sequence[int]) -> list[GridBlock[T]]:
    """(sheet row, one value per column of `cols`, item) -> as few ranges as possible: each run of
    consecutive rows × each run of adjacent columns (1-based) is one range."""
    order = sorted(range(len(cols)), key=lambda i: cols[i])
    col_runs: list[list[int]] = []  # indexes into cols, adjacent columns together
    for i in order:
        if col_runs and cols[i] == cols[col_runs[-1][-1]] + 1:
            col_runs[-1].append(i)
        else:
            col_runs.append([i])
    row_runs: list[list[tuple[int, Sequence[str], T]]] = []
    for item in sorted(rows, key=lambda x: x[0]):
        if row_runs and item[0] == row_runs[-1][-1][0] + 1:
            row_runs[-1].append(item)
        else:
            row_runs.append([item])
    out: list[GridBlock[T]] = []
    for run in row_runs:
        first, last = run[0][0], run[-1][0]
        items = tuple(x[2] for x in run)
        for cr in col_runs:
            a1 = f"{rowcol_to_a1(first, cols[cr[0]])}:{rowcol_to_a1(last, cols[cr[-1]])}"
            out.append(GridBlock(a1, [[x[1][i] for i in cr] for x in run], items))
    return out
