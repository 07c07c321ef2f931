"""The segmenter's modules import only downwards. The layer order is read from the docstring of
`arrears_segmenter/__init__.py`, and every import of every module (module level and inside functions) is
checked against it from the source (AST), without importing anything. Also: no import cycles between
modules, and every module has a layer."""

from __future__ import annotations

import ast
import re
from fnmatch import fnmatch
from pathlib import Path

import arrears_segmenter
import pytest

PACKAGE = "arrears_segmenter"
ROOT = Path(arrears_segmenter.__file__).parent
SKIP_DIRS = {"migrations", "policies"}  # alembic scripts and policy documents: not in the import graph

Layers = list[tuple[str, list[str]]]  # (name, module patterns), bottom to top


def layers(doc: str | None = arrears_segmenter.__doc__) -> Layers:
    """The numbered list `1. core: clock, settings, ...` (continuation lines indented) of the docstring."""
    out: Layers = []
    in_list = False
    for line in (doc or "").splitlines():
        m = re.match(r"^(\d+)\. (\w+):(.*)$", line)
        if m:
            assert int(m.group(1)) == len(out) + 1, f"layers are numbered 1, 2, ... in order: {line!r}"
            out.append((m.group(2), []))
            rest, in_list = m.group(3), True
        elif in_list and line[:1].isspace() and line.strip():
            rest = line
        else:
            in_list = False
            continue
        out[-1][1].extend(p.strip() for p in rest.split(",") if p.strip())
    return out


def modules() -> dict[str, Path]:
    """Module name relative to the package (`accounts.models`; a package by its folder, the root "") -> file."""
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in SKIP_DIRS:
            continue
        parts = rel.with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The segmenter modules that module `name` (source at `path`) imports, relative or absolute, anywhere."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    package = [p for p in package if p]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module == PACKAGE or (node.module or "").startswith(PACKAGE + "."):
                target = (node.module or "").removeprefix(PACKAGE).removeprefix(".")
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                found.add(sub if sub in known else target)  # `from pkg import module` or a name in pkg
        elif isinstance(node, ast.Import):
            found.update(
                a.name.removeprefix(PACKAGE + ".") for a in node.names if a.name.startswith(PACKAGE + ".")
            )
    return {m for m in found if m and m != name}  # "" = the package itself (its docstring only)


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def layer_of(name: str, order: Layers) -> int | None:
    for i, (_, patterns) in enumerate(order):
        if any(fnmatch(name, p) for p in patterns):
            return i
    return None


def upward_imports(g: dict[str, set[str]], order: Layers) -> list[str]:
    found = []
    for mod, deps in sorted(g.items()):
        mine = layer_of(mod, order)
        for dep in sorted(deps):
            theirs = layer_of(dep, order)
            if mine is not None and theirs is not None and theirs > mine:
                found.append(f"{mod} ({order[mine][0]}) imports {dep} ({order[theirs][0]})")
    return found


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(g.get(node, ())):
            if state.get(dep) == 1:
                found.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    return found


def test_the_layer_list_is_in_the_package_docstring() -> None:
    order = layers()
    assert [n for n, _ in order] == ["core", "models", "rules", "services", "entry"]
    assert all(patterns for _, patterns in order)


def test_every_module_has_a_layer() -> None:
    order, mods, g = layers(), modules(), graph()
    # a package's __init__ that imports nothing of ours (a folder marker) needs none
    missing = [
        m for m in g if layer_of(m, order) is None and not (mods[m].name == "__init__.py" and not g[m])
    ]
    assert not missing, (
        f"give these modules a layer in the docstring of arrears_segmenter/__init__.py: {missing}"
    )


def test_no_module_imports_from_a_higher_layer() -> None:
    upward = upward_imports(graph(), layers())
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" -> ".join(c) for c in found)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ..timers.service import fire_due", {"timers.service"}),
        ("from .. import bulk", {"bulk"}),
        ("from ..schedule import store", {"schedule.store"}),
        ("from .projection import decision", {"accounts.projection"}),
        ("def f():\n    from arrears_segmenter.consumer import make_handler", {"consumer"}),
        ("import arrears_segmenter.simulate", {"simulate"}),
        ("from arrears_shared import topics", set()),
    ],
)
def test_the_check_sees_every_kind_of_import(tmp_path: Path, source: str, expected: set[str]) -> None:
    f = tmp_path / "example.py"  # as if it were accounts/example.py
    f.write_text(source)
    assert imports("accounts.example", f, set(modules())) == expected


def test_the_check_catches_an_upward_import_and_a_cycle() -> None:
    order = layers()
    g = {"accounts.projection": {"timers.service"}, "timers.service": {"accounts.projection"}}
    assert upward_imports(g, order) == ["accounts.projection (rules) imports timers.service (services)"]
    assert cycles(g) == [["accounts.projection", "timers.service", "accounts.projection"]]
    assert layer_of("campaigns.views", order) == len(order) - 1  # every router is an entry point
