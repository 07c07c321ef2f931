"""Set-based writes: one statement per table per batch, rows travelling as one JSON document.

`json_populate_recordset(NULL::<table>, :rows)` turns the document into rows of the table's own type, so
every column keeps its SQL type without per-column casts and a batch of N rows costs one round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic_core import to_json
from sqlalchemy import ColumnElement, Table, any_, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import Text


def dumps(rows: Sequence[Any], exclude: Iterable[str] = ()) -> str:
    """JSON with dates/datetimes as ISO 8601 and enums as values (pydantic-core: fast). Rows are mappings or
    dataclass instances (serialized field by field, without building a dict first), without the `exclude`
    fields."""
    skip = set(exclude)
    return to_json(list(rows), exclude={"__all__": skip} if skip else None).decode()


def in_ids(column: Any, ids: Sequence[str]) -> ColumnElement[bool]:
    """`column = ANY(:ids)` with one array parameter (an IN list of thousands of binds is slow to compile)."""
    return column == any_(bindparam(None, list(ids), type_=ARRAY(Text)))


def _name(table: Table) -> str:
    return f"{table.schema}.{table.name}"


async def insert(
    conn: AsyncConnection,
    table: Table,
    rows: Sequence[Mapping[str, Any]] | Sequence[Any],
    *,
    columns: Sequence[str] | None = None,
    conflict: Sequence[str] | None = None,
    update: Iterable[str] = (),
    update_where: str | None = None,
    returning: str | None = None,
    exclude: Iterable[str] = (),
) -> list[Any]:
    """INSERT rows (all with the same keys; dataclass instances need `columns`, their field names). With
    `conflict`: DO NOTHING, or DO UPDATE of `update` columns (optionally only WHERE `update_where`, written
    against the target table `t`)."""
    if not rows:
        return []
    cols = list(columns) if columns is not None else list(rows[0].keys())
    collist = ", ".join(cols)
    sql = (
        f"INSERT INTO {_name(table)} AS t ({collist}) "
        f"SELECT {collist} FROM json_populate_recordset(NULL::{_name(table)}, CAST(:rows AS json))"
    )
    if conflict:
        upd = list(update)
        sql += f" ON CONFLICT ({', '.join(conflict)}) "
        if upd:
            sql += "DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in upd)
            if update_where:
                sql += f" WHERE {update_where}"
        else:
            sql += "DO NOTHING"
    if returning:
        sql += f" RETURNING {returning}"
    res = await conn.execute(text(sql), {"rows": dumps(rows, exclude)})
    return list(res.all()) if returning else []


async def update(
    conn: AsyncConnection,
    table: Table,
    key: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    where: str | None = None,
) -> None:
    """UPDATE the rows matched by `key` columns, setting every other key of the row dicts (same keys each)."""
    if not rows:
        return
    cols = [c for c in rows[0] if c not in key]
    sql = (
        f"UPDATE {_name(table)} AS t SET "
        + ", ".join(f"{c} = v.{c}" for c in cols)
        + f" FROM json_populate_recordset(NULL::{_name(table)}, CAST(:rows AS json)) AS v WHERE "
        + " AND ".join(f"t.{k} = v.{k}" for k in key)
    )
    if where:
        sql += f" AND {where}"
    await conn.execute(text(sql), {"rows": dumps(rows)})
