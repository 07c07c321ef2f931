"""Walk an event's personal fields (`Event.personal`: `a`, `a.*`, `a.*.b`) in its JSON data and seal or open
each string in place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Transform = Callable[[str], str]


def apply(data: Any, paths: tuple[str, ...], fn: Transform) -> int:
    """Replace every string a path reaches with `fn(value)`; returns how many were replaced."""
    n = 0
    for path in paths:
        n += _walk(data, path.split("."), fn)
    return n


def _walk(node: Any, parts: list[str], fn: Transform) -> int:
    if not isinstance(node, dict):
        return 0
    head, rest = parts[0], parts[1:]
    children = list(node) if head == "*" else [head] if head in node else []
    n = 0
    for k in children:
        if rest:
            n += _walk(node[k], rest, fn)
        elif isinstance(node[k], str) and node[k]:
            node[k] = fn(node[k])
            n += 1
    return n
