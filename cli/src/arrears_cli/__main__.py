"""The `arrears` command: a thin registry of sub-command modules.

Each module in `arrears_cli.commands` exposes `register(app)`, which adds its command(s) or sub-app.
Adding one is one line in COMMAND_MODULES.
"""

from __future__ import annotations

import importlib

import typer

COMMAND_MODULES: tuple[str, ...] = (
    "ingest",  # arrears ingest sheet|file|rejects|runs
    "up",  # arrears up: the whole platform on the embedded stack
    "migrate",  # arrears migrate: every service's schema to head
    "dlq",  # arrears dlq list|show|replay
    "schemas",  # arrears schemas export: JSON Schemas + AsyncAPI
    "config",  # arrears config: every ARREARS_* variable, generated from the settings classes
    "simulate",  # arrears simulate --days 30: dry run of the segmenter's policy and compliance gate
    "audit",  # arrears audit verify: every service's hash-chained audit log
    "keys",  # arrears keys create|list|rotate|revoke|revoke-all|locks|unlock: API keys
    "sending",  # arrears sending halt|resume|status: the incident switch
    "security",  # arrears security matrix: routes x roles, generated
    "intents",  # arrears intents split|train|evaluate|retrain|models: the reply classifier
    "scoring",  # arrears scoring train|run|models: the payment and drop-out models, the daily scoring
    "privacy",  # arrears erase|export ACCOUNT, arrears vault rewrap: personal data
)

app = typer.Typer(name="arrears", help="Arrears: event-driven debt collections.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """Arrears: event-driven debt collections."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"arrears_cli.commands.{_name}").register(app)


if __name__ == "__main__":
    app()
