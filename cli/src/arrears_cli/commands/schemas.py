"""`arrears schemas export DIR`: JSON Schemas of every event type and the AsyncAPI 3.0 document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
import yaml
from arrears_shared.asyncapi import document
from arrears_shared.events import json_schemas

schemas_app = typer.Typer(help="Event contracts for downstream teams.", no_args_is_help=True)


@schemas_app.command()
def export(
    directory: Annotated[Path, typer.Argument(help="Output directory")] = Path("docs/schemas"),
) -> None:
    """Write <ce_type>.json for each event and asyncapi.yaml."""
    directory.mkdir(parents=True, exist_ok=True)
    for ce_type, schema in json_schemas().items():
        (directory / f"{ce_type}.json").write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    (directory / "asyncapi.yaml").write_text(yaml.safe_dump(document(), sort_keys=False, width=110))
    typer.echo(f"wrote {len(json_schemas()) + 1} files to {directory}")


def register(app: typer.Typer) -> None:
    app.add_typer(schemas_app, name="schemas")
