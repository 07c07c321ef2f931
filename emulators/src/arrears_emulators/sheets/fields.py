"""Partial responses: the ``fields`` system parameter (``sheets.properties,spreadsheetId``,
``sheets(properties(title,sheetId))``, ``sheets/properties/title``)."""

from __future__ import annotations

from typing import Any

FieldTree = dict[str, "FieldTree"]


class FieldMaskError(ValueError):
    pass


def parse_fields(mask: str) -> FieldTree:
    tree: FieldTree = {}
    pos = _parse_list(mask.replace(" ", ""), 0, tree)
    if pos != len(mask.replace(" ", "")):
        raise FieldMaskError(f"Invalid field selection {mask}")
    return tree


def _parse_list(text: str, pos: int, into: FieldTree) -> int:
    while pos < len(text):
        pos = _parse_path(text, pos, into)
        if pos < len(text) and text[pos] == ",":
            pos += 1
            continue
        break
    return pos


def _parse_path(text: str, pos: int, into: FieldTree) -> int:
    start = pos
    while pos < len(text) and text[pos] not in ",()":
        pos += 1
    path = text[start:pos]
    if not path:
        raise FieldMaskError("empty field name")
    node = into
    for part in path.replace("/", ".").split("."):
        if not part:
            raise FieldMaskError(f"bad field path {path}")
        node = node.setdefault(part, {})
    if pos < len(text) and text[pos] == "(":
        pos = _parse_list(text, pos + 1, node)
        if pos >= len(text) or text[pos] != ")":
            raise FieldMaskError("unbalanced parentheses")
        pos += 1
    return pos


def apply_fields(value: Any, tree: FieldTree) -> Any:
    """Keep only the selected fields; an empty subtree (or ``*``) keeps the whole value."""
    if not tree or "*" in tree:
        return value
    if isinstance(value, list):
        return [apply_fields(v, tree) for v in value]
    if isinstance(value, dict):
        return {k: apply_fields(value[k], sub) for k, sub in tree.items() if k in value}
    return value
