"""``python -m arrears_emulators {quo|gmail|sheets} --host 127.0.0.1 --port N [emulator options]``

Imports ``arrears_emulators.<name>.app`` lazily (so one emulator works while another is absent) and builds
its config from the remaining arguments:

1. if the module defines ``build_config(argv: list[str])``, that parses the emulator's own options;
2. else if it defines a pydantic model ``Config`` (or ``create_app``'s first parameter is annotated with a
   pydantic model, optionally ``| None``), the generic options ``--config FILE.json`` and
   ``--set field=value`` (value parsed as JSON when possible) fill it;
3. else ``create_app()`` is called with ``None`` and no extra options are allowed.

Prints ``EMULATOR <name> ready http://host:port`` on stdout once listening; stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import inspect
import json
import pkgutil
import sys
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import BaseModel

import arrears_emulators
from arrears_emulators.common.server import serve_main

# every subpackage with an `app` module is an emulator (a new provider's emulator needs no entry here)
EMULATORS = tuple(
    sorted(
        m.name
        for m in pkgutil.iter_modules(arrears_emulators.__path__)
        if m.ispkg and importlib.util.find_spec(f"arrears_emulators.{m.name}.app") is not None
    )
)


def _config_model(module: ModuleType) -> type[BaseModel] | None:
    declared = getattr(module, "Config", None)
    if isinstance(declared, type) and issubclass(declared, BaseModel):
        return declared
    create_app = module.create_app
    params = list(inspect.signature(create_app).parameters)
    if not params:
        return None
    try:
        hint = typing.get_type_hints(create_app).get(params[0])
    except (NameError, TypeError):
        return None
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _generic_config(module: ModuleType, name: str, argv: list[str]) -> Any:
    config_cls = _config_model(module)
    if config_cls is not None:
        parser = argparse.ArgumentParser(prog=f"arrears_emulators {name}")
        parser.add_argument("--config", type=Path, help="JSON file with config fields")
        parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
        args = parser.parse_args(argv)
        data: dict[str, Any] = json.loads(args.config.read_text()) if args.config else {}
        for item in args.set:
            field, _, raw = item.partition("=")
            try:
                data[field] = json.loads(raw)
            except json.JSONDecodeError:
                data[field] = raw
        return config_cls.model_validate(data)
    if argv:
        raise SystemExit(f"arrears_emulators {name}: unexpected arguments {argv}")
    return None


def load_app(name: str, argv: list[str]) -> Any:
    try:
        module = importlib.import_module(f"arrears_emulators.{name}.app")
    except ModuleNotFoundError as exc:
        raise SystemExit(f"emulator {name!r} is not available: {exc}") from exc
    build_config = getattr(module, "build_config", None)
    config = build_config(argv) if callable(build_config) else _generic_config(module, name, argv)
    return module.create_app(config)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="arrears_emulators", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", choices=EMULATORS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (see the ready line)")
    parser.add_argument("--log-level", default="warning")
    args, rest = parser.parse_known_args(argv)
    app = load_app(args.name, rest)
    try:
        asyncio.run(serve_main(app, name=args.name, host=args.host, port=args.port, log_level=args.log_level))
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
