"""`arrears keys` from a shell: create (printed once), list (never the secret), rotate, revoke — each in the
console's audit log as `cli:<os user>` — and `arrears audit verify` over every service's chain."""

from __future__ import annotations

from collections.abc import Callable

from arrears_cli.__main__ import app as cli
from arrears_shared.db.migrate import upgrade
from typer.testing import CliRunner


def test_keys_lifecycle_from_the_shell(fresh_database_url: Callable[..., str]) -> None:
    url = fresh_database_url("cli_keys")
    upgrade(url, "iam")
    upgrade(url, "console")
    run = CliRunner()

    def arrears(*args: str) -> str:
        result = run.invoke(cli, [*args, "--database-url", url])
        assert result.exit_code == 0, result.output
        return result.output

    made = arrears("keys", "create", "nightly-job", "--role", "service", "--expires-in-days", "30")
    key = next(line for line in made.splitlines() if line.startswith("ark_") and "_…" not in line)
    listed = arrears("keys", "list")
    assert "nightly-job" in listed and key not in listed and "service" in listed
    rotated = arrears("keys", "rotate", "nightly-job", "--grace-minutes", "5")
    new_key = next(line for line in rotated.splitlines() if line.startswith("ark_") and "_…" not in line)
    assert new_key != key
    # the old key, still in its grace period, cannot be rotated again: its name is its successor's now
    old_id = made.splitlines()[0].split()[0]
    twice = run.invoke(cli, ["keys", "rotate", old_id, "--database-url", url])
    assert twice.exit_code == 1 and "Traceback" not in twice.output, twice.output
    assert "revoked" in arrears("keys", "revoke", "nightly-job")
    again = run.invoke(cli, ["keys", "revoke", "nightly-job", "--database-url", url])
    assert again.exit_code == 1 and "no active key" in again.output
    bad = run.invoke(cli, ["keys", "create", "x", "--role", "root", "--database-url", url])
    assert bad.exit_code != 0
    verified = arrears("audit", "verify")
    assert "console: entries 3" in verified and "audit logs OK" in verified
