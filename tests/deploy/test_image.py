"""The container image without a container runtime (`make image` builds and starts the real one, see
docs/image.md).

- The image's Python environment is installed with the very recipe the Containerfile runs
  (deploy/image/install.sh) into a temporary directory; every service's `python -m` module and the `arrears`
  CLI import from it, and it holds the locked runtime packages and no dev-only one.
- The SBOM (deploy/image/sbom.sh, `make sbom`) lists every locked runtime package at its locked version and
  no dev-only package.
- The Containerfile keeps its invariants: multi-stage, numeric non-root USER, OCI labels from build args,
  nothing but the environment copied from the build stage, no uv/pip in the final stage.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
IMAGE_DIR = ROOT / "deploy" / "image"
CONTAINERFILE = ROOT / "Containerfile"
SERVICE_MODULES = sorted(
    f"arrears_{d.name.replace('-', '_')}" for d in (ROOT / "services").iterdir() if d.is_dir()
)
DEV_TOOLS = {"pytest", "ruff", "mypy", "playwright", "hypothesis"}


def _uv() -> str:
    local = ROOT / ".tools" / "bin" / "uv"
    found = str(local) if local.exists() else shutil.which("uv")
    assert found, "uv not found: run `make env`"
    return found


def _uv_env(**extra: str) -> dict[str, str]:
    """The caller's environment (proxy, CA bundle, uv cache) without what would point uv at another venv."""
    drop = {"VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT", "PYTHONPATH", "PYTHONHOME"}
    return {k: v for k, v in os.environ.items() if k not in drop} | extra


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# -- what uv.lock says the image must (and must not) hold -----------------------------------------------------


@functools.cache
def _lock() -> dict[str, Any]:
    return tomllib.loads((ROOT / "uv.lock").read_text())


def _closure(roots: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Packages reachable from `roots` (lock dependency entries) over dependencies and requested extras,
    markers ignored (so a superset of any one platform's install): name -> locked versions."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    for p in _lock()["package"]:
        by_name.setdefault(_norm(p["name"]), []).append(p)
    seen: dict[str, set[str]] = {}
    todo = list(roots)
    while todo:
        dep = todo.pop()
        for p in by_name[_norm(dep["name"])]:
            if "version" in dep and p.get("version") != dep["version"]:
                continue
            key = (_norm(p["name"]), p.get("version", ""))
            extras = set(dep.get("extra", []))
            visited = seen.setdefault(key[0], set())
            if key[1] in visited and not extras:
                continue
            visited.add(key[1])
            todo.extend(p.get("dependencies", []))
            for extra in extras:
                todo.extend(p.get("optional-dependencies", {}).get(extra, []))
    return seen


@functools.cache
def _runtime() -> dict[str, set[str]]:
    return _closure([{"name": m} for m in _lock()["manifest"]["members"]])


@functools.cache
def _dev_only() -> set[str]:
    dev = _closure(list(_lock()["manifest"]["dependency-groups"]["dev"]))
    return set(dev) - set(_runtime())


def test_lock_reading_sees_the_dev_tools_as_dev_only() -> None:
    assert DEV_TOOLS <= _dev_only()
    assert {"arrears-shared", "arrears-cli", "fastapi", "aiokafka"} <= set(_runtime())
    assert "psutil" not in _dev_only()  # in the dev group and a CLI dependency: runtime wins


# -- the environment, installed as the Containerfile installs it ---------------------------------------------


def test_containerfile_installs_with_the_shared_recipe() -> None:
    build = _stages()[0]
    assert any("deploy/image/install.sh /app/.venv" in line for line in build if line.startswith("RUN"))
    recipe = (IMAGE_DIR / "install.sh").read_text()
    for flag in ("--frozen", "--no-dev", "--all-packages", "--no-editable", "--compile-bytecode"):
        assert flag in recipe


def test_image_environment_imports_every_service_and_holds_no_dev_package(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    python = Path(sys.base_prefix) / "bin" / "python3.11"
    subprocess.run(
        ["sh", str(IMAGE_DIR / "install.sh"), str(venv)],
        cwd=ROOT,
        env=_uv_env(UV=_uv(), PYTHON=str(python)),
        check=True,
        capture_output=True,
        timeout=240,
    )
    modules = [*SERVICE_MODULES, "arrears_cli"]
    probe = (
        "import importlib, importlib.metadata as md, json, sys\n"
        f"mods = {modules!r}\n"
        "files = {m: importlib.import_module(m + '.__main__').__file__ for m in mods}\n"
        "dists = {d.metadata['Name']: d.version for d in md.distributions()}\n"
        # the pruned discovery documents still hold the one the Gmail client is built from
        "from googleapiclient.discovery import build\n"
        "build('gmail', 'v1', static_discovery=True, developerKey='k', cache_discovery=False)\n"
        "json.dump({'files': files, 'dists': dists, 'prefix': sys.prefix}, sys.stdout)\n"
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        cwd=tmp_path,
        env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    seen = json.loads(out.stdout)
    site = str(venv / "lib")
    assert all(f.startswith(site) for f in seen["files"].values()), seen["files"]  # not the source tree
    installed = {_norm(n): v for n, v in seen["dists"].items()}
    runtime = _runtime()
    assert not set(installed) & (_dev_only() | DEV_TOOLS)
    assert set(installed) <= set(runtime), set(installed) - set(runtime)
    assert {_norm(m) for m in _lock()["manifest"]["members"]} <= set(installed)
    assert all(installed[n] in runtime[n] for n in installed), "installed version differs from uv.lock"
    # bytecode compiled at build time: a read-only root filesystem never gets a .pyc written
    assert list((venv / "lib").glob("python3.11/site-packages/arrears_shared/__pycache__/*.pyc"))
    cli = subprocess.run(
        [str(venv / "bin" / "arrears"), "dlq", "--help"], capture_output=True, text=True, timeout=60
    )
    assert cli.returncode == 0 and "list" in cli.stdout, cli.stderr


# -- the SBOM ---------------------------------------------------------------------------------------------------


def test_sbom_lists_the_locked_runtime_packages_and_no_dev_package(tmp_path: Path) -> None:
    out = tmp_path / "sbom.cdx.json"
    subprocess.run(
        ["sh", str(IMAGE_DIR / "sbom.sh"), str(out)],
        cwd=ROOT,
        env=_uv_env(UV=_uv()),
        check=True,
        capture_output=True,
        timeout=60,
    )
    bom = json.loads(out.read_text())
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"].startswith("1.")
    listed: dict[str, set[str]] = {}
    for c in bom["components"]:
        listed.setdefault(_norm(c["name"]), set()).add(c["version"])
        if "purl" in c:
            assert c["purl"] == f"pkg:pypi/{c['name']}@{c['version']}"
    assert listed == _runtime()
    assert not set(listed) & (_dev_only() | DEV_TOOLS)


# -- the Containerfile's invariants -----------------------------------------------------------------------------


def _instructions() -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", CONTAINERFILE.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _stages() -> list[list[str]]:
    stages: list[list[str]] = []
    for line in _instructions():
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_containerfile_is_multi_stage_on_a_slim_python_311_base() -> None:
    args = [line for line in _instructions() if line.startswith("ARG BASE_IMAGE=")]
    assert args == ["ARG BASE_IMAGE=docker.io/library/python:3.11-slim"]
    stages = _stages()
    assert len(stages) >= 2
    assert all(s[0].split()[1] == "${BASE_IMAGE}" for s in stages)
    assert re.fullmatch(r"FROM \$\{BASE_IMAGE\} AS build", stages[0][0])


def test_final_stage_runs_as_numeric_non_root_user_with_oci_labels() -> None:
    final = _stages()[-1]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    assert len(users) == 1 and re.fullmatch(r"\d+(:\d+)?", users[0]), users
    assert all(int(part) != 0 for part in users[0].split(":"))
    labels = " ".join(line for line in final if line.startswith("LABEL "))
    for key, arg in (("version", "VERSION"), ("revision", "REVISION"), ("source", "SOURCE")):
        assert f'org.opencontainers.image.{key}="${{{arg}}}"' in labels
        assert any(line.startswith(f"ARG {arg}") for line in final)


def test_final_stage_has_only_the_environment_and_no_build_tools() -> None:
    final = _stages()[-1]
    copies = [line for line in final if line.startswith(("COPY", "ADD"))]
    assert copies == ["COPY --from=build /app/.venv /app/.venv"]
    runs = " ".join(line for line in final if line.startswith("RUN"))
    assert not re.search(r"\b(uv|apt-get|apt|gcc|make)\b|pip install", runs), runs
    assert "pip uninstall" in runs and "_bundled" in runs  # the base's own pip goes too
    env = " ".join(line for line in final if line.startswith("ENV"))
    assert "PATH=/app/.venv/bin:" in env and "PYTHONDONTWRITEBYTECODE=1" in env
    assert "ENTRYPOINT" not in " ".join(final)  # the Deployments' `command:` picks the service


def test_build_context_keeps_out_what_the_image_does_not_need() -> None:
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*")] == "*"  # allow-list: only what is re-included below goes in
    included = {line[1:] for line in ignore if line.startswith("!")}
    copied = {
        src
        for line in _stages()[0]
        if line.startswith("COPY") and "--from" not in line
        for src in line.split()[1:-1]
    }
    assert copied <= included, copied - included
    assert not included & {".venv", ".arrears", "tests", "docs", ".git"}
