"""`arrears config`: the configuration reference, generated from the services' settings classes.

Every service's settings class is found through its package's `settings` module (`arrears_<svc>.settings`,
services from `arrears_shared.topology.services()`); a service without one uses the shared
`arrears_shared.settings.ServiceSettings`. Each field is one environment variable (`ARREARS_` + the field
name upper-cased). `docs/configuration.md` is this command's markdown output (`make config-docs`), and
`tests/test_docs.py` fails when the two differ, so the reference cannot drift from the code.

Defaults of secret fields (`SecretStr`) are never printed.
"""

from __future__ import annotations

import importlib
import inspect
import json
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from arrears_shared import topology
from arrears_shared.settings import ServiceSettings
from pydantic import SecretBytes, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

SECRET = "(secret)"
UNSET = "(unset)"
REQUIRED = "(required)"


@dataclass(frozen=True)
class Setting:
    """One environment variable and how each service that reads it defines it."""

    env: str
    field: str
    type: str
    secret: bool
    description: str
    defaults: dict[str, str]  # service -> rendered default, in topology.services() order

    @property
    def services(self) -> list[str]:
        return list(self.defaults)


def settings_module(service: str) -> str:
    return "arrears_" + service.replace("-", "_") + ".settings"


def settings_class(service: str) -> type[ServiceSettings]:
    """The settings class of `service`: the most derived `ServiceSettings` subclass defined in its package's
    `settings` module, or `ServiceSettings` when the package has no such module."""
    name = settings_module(service)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name not in (name, name.rsplit(".", 1)[0]):
            raise
        return ServiceSettings
    found = [
        c
        for _, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, ServiceSettings) and c.__module__ == module.__name__
    ]
    leaves = [c for c in found if not any(o is not c and issubclass(o, c) for o in found)]
    if len(leaves) > 1:
        raise RuntimeError(f"{name} defines several settings classes: {[c.__name__ for c in leaves]}")
    return leaves[0] if leaves else ServiceSettings


def env_name(cls: type[ServiceSettings], field: str, info: FieldInfo) -> str:
    alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
    if alias:
        return alias.upper()
    return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def _is_secret(annotation: Any) -> bool:
    if annotation in (SecretStr, SecretBytes):
        return True
    return any(_is_secret(a) for a in typing.get_args(annotation))


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is Literal:
        return " | ".join(str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        parts = [_type_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " | ".join(parts)
    if origin in (dict, list, set, tuple):  # pydantic-settings parses these from JSON
        return "JSON object" if origin is dict else "JSON list"
    if annotation in (SecretStr, SecretBytes):
        return "secret"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " | ".join(str(m.value) for m in annotation)
    return getattr(annotation, "__name__", str(annotation))


_BOUNDS = {"Gt": ">", "Ge": "≥", "Lt": "<", "Le": "≤"}  # annotated_types constraints pydantic records


def _constraints(info: FieldInfo) -> str:
    out = []
    for m in info.metadata:
        kind = type(m).__name__
        if kind in _BOUNDS:
            out.append(f"{_BOUNDS[kind]} {getattr(m, kind.lower())}")
    return ", ".join(out)


def _default(info: FieldInfo, secret: bool) -> str:
    if secret:
        return SECRET
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return REQUIRED
    else:
        value = info.default
    if value is None:
        return UNSET
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):  # what the variable takes: JSON
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _rank(cls: type, field: str) -> int:
    """Position in `cls.__mro__` of the most basic class declaring `field` (own fields of the service's class
    first, then the shared ones: ServiceSettings, Kafka, Database, Runner)."""
    declaring = [i for i, c in enumerate(cls.__mro__) if field in vars(c).get("__annotations__", {})]
    return max(declaring, default=0)


def collect(services: Sequence[str] = topology.services()) -> list[Setting]:
    """Every variable read by `services`: the ones all services share first, then grouped by the first
    service that reads it; within a group by declaring class, then in declaration order."""
    rows: dict[str, dict[str, Any]] = {}
    for svc in services:
        cls = settings_class(svc)
        for field, info in cls.model_fields.items():
            env = env_name(cls, field, info)
            secret = _is_secret(info.annotation)
            type_name = _type_name(info.annotation)
            bounds = _constraints(info)
            row = rows.setdefault(
                env,
                {
                    "field": field,
                    "type": f"{type_name} ({bounds})" if bounds else type_name,
                    "secret": secret,
                    "descriptions": [],
                    "defaults": {},
                    "rank": _rank(cls, field),
                },
            )
            if info.description and info.description not in row["descriptions"]:
                row["descriptions"].append(info.description)
            row["defaults"][svc] = _default(info, secret)
    rank = {env: r["rank"] for env, r in rows.items()}
    settings = [
        Setting(
            env=env,
            field=r["field"],
            type=r["type"],
            secret=r["secret"],
            description=" / ".join(r["descriptions"]),
            defaults=r["defaults"],
        )
        for env, r in rows.items()
    ]
    order = {svc: i for i, svc in enumerate(services)}
    everyone = set(services)
    return sorted(
        settings,
        key=lambda s: (
            0 if set(s.services) == everyone else 1 + min(order[x] for x in s.services),
            rank[s.env],
        ),
    )


def undocumented(services: Sequence[str] = topology.services()) -> list[str]:
    """`ARREARS_X (service, ...)` for every variable without a `Field(description=...)`."""
    return [f"{s.env} ({', '.join(s.services)})" for s in collect(services) if not s.description.strip()]


# -- rendering ----------------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("\n", " ").replace("|", "\\|")


def _code(value: str) -> str:
    if value in (SECRET, UNSET, REQUIRED):
        return value
    if value == "":
        return '`""`'
    return "`" + value.replace("|", "\\|") + "`"


def _used_by(s: Setting, services: Sequence[str]) -> str:
    if len(services) > 1 and set(s.services) == set(services):
        return "all"
    return ", ".join(s.services)


def _default_cell(s: Setting) -> str:
    """The most common default, then the services that differ: `8000` (console `8080`, ingest `8001`)."""
    values = list(s.defaults.values())
    common = max(dict.fromkeys(values), key=values.count)
    others = [f"{svc} {_code(v)}" for svc, v in s.defaults.items() if v != common]
    return _code(common) + (f" ({', '.join(others)})" if others else "")


MARKDOWN_HEADER = """\
# Configuration reference

<!-- Generated by `arrears config --format markdown` (`make config-docs`) from the services' settings
classes. Do not edit by hand: change the `Field(description=...)` in the settings module and regenerate.
tests/test_docs.py fails when this file and the code disagree. -->

Every setting is an environment variable. Each service reads only the variables of its own settings class
(`services/<name>/src/arrears_<name>/settings.py`, all built on `arrears_shared.settings.ServiceSettings`)
and ignores the others, so one shared environment (or ConfigMap) can hold them all. Secrets
(`SecretStr`) never appear in logs or reprs, and their defaults are not shown here.

*Used by* `all` means every service ({services}). Where services differ, *Default* shows the common value
followed by the exceptions. `(unset)` means no value: the feature is off or the library default applies.
`arrears config --service <name> --format env` prints a commented `.env` template for one service.

| Variable | Type | Default | Used by | Description |
|---|---|---|---|---|
"""


def render_markdown(settings: Sequence[Setting], services: Sequence[str] = topology.services()) -> str:
    out = [MARKDOWN_HEADER.format(services=", ".join(services))]
    for s in settings:
        out.append(
            f"| `{s.env}` | {_cell(s.type)} | {_default_cell(s)} | {_used_by(s, services)} "
            f"| {_cell(s.description)} |\n"
        )
    return "".join(out)


def render_env(settings: Sequence[Setting], services: Sequence[str] = topology.services()) -> str:
    """A `.env` template: every line commented out, so loading it unchanged changes nothing."""
    out = ["# Arrears configuration template (generated by `arrears config --format env`).\n"]
    out.append("# Uncomment and edit the variables you need; defaults are shown (secrets left empty).\n")
    for s in settings:
        out.append("\n")
        desc = s.description.strip() or "(no description)"
        out.append(f"# {desc}\n")
        out.append(f"# type: {s.type}; used by: {_used_by(s, services)}\n")
        values = set(s.defaults.values())
        if s.secret:
            out.append(f"#{s.env}=\n")
        elif len(values) == 1:
            v = values.pop()
            out.append(f"#{s.env}={'' if v in (UNSET, REQUIRED) else v}\n")
        else:
            per = ", ".join(f"{svc}={v}" for svc, v in s.defaults.items())
            out.append(f"# defaults differ: {per}\n#{s.env}=\n")
    return "".join(out)


def config(
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="markdown (the docs table) or env (a .env template)")
    ] = "markdown",
    service: Annotated[
        list[str] | None, typer.Option("--service", "-s", help="Only the variables these services read")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout")
    ] = None,
) -> None:
    """Print every ARREARS_* variable: default, the services that read it, description (from the code)."""
    services = list(service or topology.services())
    unknown = sorted(set(services) - set(topology.services()))
    if unknown:
        raise typer.BadParameter(f"unknown service(s) {unknown}; known: {', '.join(topology.services())}")
    services = [s for s in topology.services() if s in services]
    renderers = {"markdown": render_markdown, "env": render_env}
    if fmt not in renderers:
        raise typer.BadParameter(f"--format must be one of {', '.join(renderers)}")
    text = renderers[fmt](collect(services), services)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        typer.echo(f"wrote {output}", err=True)


def register(app: typer.Typer) -> None:
    app.command("config")(config)
