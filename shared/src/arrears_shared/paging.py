"""Cursor pagination for list routes: nothing is cut off silently.

A list route takes `limit` (capped) and `cursor`, and answers one page plus the cursor of the next one (in
the `X-Next-Cursor` header and a `Link: <...>; rel="next"` header; absent on the last page). The cursor is
opaque to callers: the sort key and id of the last row returned, so walking the cursors returns every row
exactly once even while rows are added (keyset pagination; each list keeps its order, ties broken by id).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from fastapi import HTTPException, Query, Request, Response
from sqlalchemy import ColumnElement, Select, and_, or_, tuple_

NEXT_CURSOR_HEADER = "X-Next-Cursor"
CURSOR_QUERY = Query(
    None, max_length=512, description=f"Opaque cursor from a previous page's `{NEXT_CURSOR_HEADER}` header"
)
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "headers": {
            NEXT_CURSOR_HEADER: {
                "description": "Cursor of the next page (pass it as `cursor`); absent on the last page",
                "schema": {"type": "string"},
            },
            "Link": {
                "description": 'The next page\'s URL, `<url>; rel="next"`',
                "schema": {"type": "string"},
            },
        }
    }
}


def encode(values: Sequence[Any]) -> str:
    def plain(v: Any) -> Any:
        if isinstance(v, datetime):
            return {"t": v.isoformat()}
        return {"d": v.isoformat()} if isinstance(v, date) else v

    return base64.urlsafe_b64encode(json.dumps([plain(v) for v in values]).encode()).decode().rstrip("=")


def _value(v: Any) -> Any:
    if not isinstance(v, dict):
        return v
    return datetime.fromisoformat(v["t"]) if "t" in v else date.fromisoformat(v["d"])


def decode(cursor: str, kinds: Sequence[type]) -> list[Any]:
    """The values of a cursor made by `encode`, each of the expected kind; 400 for anything else (a
    cursor is the caller's input: a made-up one must not reach the database as a wrong-typed value)."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, list) or len(raw) != len(kinds):
            raise ValueError
        values = [_value(v) for v in raw]
    except (ValueError, TypeError, KeyError, AttributeError):
        raise HTTPException(400, "invalid cursor") from None
    for v, kind in zip(values, kinds, strict=True):
        if not isinstance(v, kind) or (kind is date and isinstance(v, datetime)) or isinstance(v, bool):
            raise HTTPException(400, "invalid cursor")
    return values


def keyset(
    q: Select[Any],
    keys: Sequence[ColumnElement[Any]],
    cursor: str | None,
    limit: int,
    descending: Sequence[bool] | None = None,
) -> Select[Any]:
    """`q` ordered by `keys` (sort key(s) then a unique id; newest first unless `descending` says per key),
    after `cursor`, one row more than `limit` (to know whether there is a next page)."""
    desc = list(descending) if descending is not None else [True] * len(keys)
    if cursor:
        values = decode(cursor, [k.type.python_type for k in keys])
        if all(desc):  # a row comparison, which an index on the keys serves
            q = q.where(tuple_(*keys) < tuple_(*values))
        else:
            q = q.where(
                or_(
                    *(
                        and_(
                            *(k == v for k, v in zip(keys[:i], values[:i], strict=True)),
                            keys[i] < values[i] if desc[i] else keys[i] > values[i],
                        )
                        for i in range(len(keys))
                    )
                )
            )
    return q.order_by(*(k.desc() if d else k.asc() for k, d in zip(keys, desc, strict=True))).limit(limit + 1)


def after_sql(
    cursor: str | None, columns: Sequence[tuple[str, type]], *, descending: bool = True
) -> tuple[str, dict[str, Any]]:
    """For a text query ordered by `columns` (name and Python type of each, ending with a unique one;
    newest first unless `descending` is false): the condition that keeps the rows after `cursor` (`TRUE`
    without one) and its parameters."""
    if not cursor:
        return "TRUE", {}
    values = decode(cursor, [kind for _, kind in columns])
    names = [f"_cursor{i}" for i in range(len(columns))]
    op = "<" if descending else ">"
    cond = f"({', '.join(c for c, _ in columns)}) {op} ({', '.join(':' + n for n in names)})"
    return cond, dict(zip(names, values, strict=True))


def page(rows: Sequence[Any], limit: int, key: Any) -> tuple[list[Any], str | None]:
    """The first `limit` rows and the cursor after the last of them (None when nothing follows);
    `key(row)` gives the row's values of the keyset's keys."""
    rows = list(rows)
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode(key(rows[-1]))


def announce(request: Request, response: Response, cursor: str | None) -> None:
    """Put the next page's cursor (and URL) on the answer."""
    if cursor is None:
        return
    response.headers[NEXT_CURSOR_HEADER] = cursor
    response.headers["Link"] = f'<{request.url.include_query_params(cursor=cursor)}>; rel="next"'
