"""`arrears security matrix`: who may call what, generated from every service's routes (docs/security.md)."""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path
from typing import Annotated

import typer
from arrears_shared import topology
from arrears_shared.auth.matrix import RouteAccess, render_markdown, render_public, route_table
from arrears_shared.service import ServiceHost

security_app = typer.Typer(help="The security model: the routes x roles matrix.", no_args_is_help=True)
BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"
PUBLIC_BEGIN, PUBLIC_END = "<!-- public:begin -->", "<!-- public:end -->"
# settings the services refuse to start without; only their routes are read here, nothing is contacted
_SHAPE_ONLY_ENV = {
    "ARREARS_QUO_FROM_NUMBER": "+15550100000",
    "ARREARS_GMAIL_SENDER": "matrix@example.invalid",
    "ARREARS_GMAIL_TOKEN": "unused-nothing-is-sent",
    "ARREARS_WHATSAPP_PHONE_NUMBER_ID": "100000000000000",
    "ARREARS_WHATSAPP_ACCESS_TOKEN": "unused-nothing-is-sent",
    "ARREARS_WHATSAPP_APP_SECRET": "unused-nothing-is-verified",
    "ARREARS_WHATSAPP_VERIFY_TOKEN": "unused-nothing-is-verified",
}


def tables() -> list[list[RouteAccess]]:
    saved = {k: os.environ.get(k) for k in _SHAPE_ONLY_ENV}
    os.environ.update({k: v for k, v in _SHAPE_ONLY_ENV.items() if not os.environ.get(k)})
    try:
        out = []
        for svc in topology.services():
            module = importlib.import_module(f"{topology.service(svc).package}.__main__")
            out.append(route_table(svc, ServiceHost(module.definition()).build_app()))
        return out
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)


def splice(text: str, begin: str, end: str, body: str) -> str:
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise ValueError(f"markers {begin} ... {end} not found")
    return pattern.sub(lambda _: f"{begin}\n{body}{end}", text)


def render_into(text: str) -> str:
    t = tables()
    return splice(splice(text, BEGIN, END, render_markdown(t)), PUBLIC_BEGIN, PUBLIC_END, render_public(t))


@security_app.command("matrix")
def matrix(
    write: Annotated[
        Path | None, typer.Option(help="Update the matrix between the markers of this file")
    ] = None,
) -> None:
    """Print the routes x roles matrix (markdown), or write it into docs/security.md."""
    if write is None:
        typer.echo(render_markdown(tables()), nl=False)
        return
    write.write_text(render_into(write.read_text()))
    typer.echo(f"updated {write}")


def register(app: typer.Typer) -> None:
    app.add_typer(security_app, name="security")
