"""Stripe's form encoding: ``metadata[account_id]=A1&line_items[0][quantity]=1`` into nested dicts/lists.

Stripe's API takes ``application/x-www-form-urlencoded`` bodies whose keys use brackets for nesting; an
all-digit bracket is a list index (``line_items[0]``), an empty bracket appends (``expand[]``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

_PART = re.compile(r"\[([^\[\]]*)\]")


class FormError(ValueError):
    """A key that cannot be read (``a[b``, a list and a dict under one name)."""


def _path(key: str) -> list[str]:
    head, _, rest = key.partition("[")
    if not head:
        raise FormError(f"invalid parameter name {key!r}")
    if not rest:
        return [head]
    rest = "[" + rest
    parts = _PART.findall(rest)
    if "".join(f"[{p}]" for p in parts) != rest:
        raise FormError(f"invalid parameter name {key!r}")
    return [head, *parts]


def _lists(node: Any) -> Any:
    """Dicts whose keys are all indices (or appends) become lists, in index order."""
    if not isinstance(node, dict):
        return node
    node = {k: _lists(v) for k, v in node.items()}
    if node and all(isinstance(k, int) for k in node):
        return [node[k] for k in sorted(node)]
    if any(isinstance(k, int) for k in node):
        raise FormError("a parameter is both a list and a hash")
    return node


def decode(body: bytes) -> dict[str, Any]:
    """Decode a Stripe-style form body. Raises `FormError` on malformed keys."""
    root: dict[Any, Any] = {}
    appends: dict[int, int] = {}
    for key, value in parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True):
        node: dict[Any, Any] = root
        parts = _path(key)
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            name: Any = part
            if part == "":
                name = appends.get(id(node), 0)
                appends[id(node)] = name + 1
            elif part.isdigit() and i > 0:
                name = int(part)
            if last:
                node[name] = value
            else:
                child = node.setdefault(name, {})
                if not isinstance(child, dict):
                    raise FormError(f"{key!r} nests under a plain value")
                node = child
    out = _lists(root)
    assert isinstance(out, dict)
    return out
