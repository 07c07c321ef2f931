"""Sub-commands of `arrears`; each module exposes `register(app: typer.Typer) -> None`."""
