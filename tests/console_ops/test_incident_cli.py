"""`arrears sending halt|resume|status` and `arrears keys revoke-all|locks|unlock` from a shell with database
access: the same halts, keys and locks as the console's API, every change in the console's audit log as
`cli:<os user>`, and the break-glass path (every key revoked, a new admin key printed, in one transaction)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from arrears_cli.__main__ import app as cli
from arrears_shared.audit import list_entries, verify
from arrears_shared.auth import keys, lockout
from arrears_shared.control import halts
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from auth_support import issue_key
from typer.testing import CliRunner


def db(url: str, work: Callable[..., Any]) -> Any:
    async def go() -> Any:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                out = await work(conn)
                await conn.commit()
                return out
        finally:
            await engine.dispose()

    return asyncio.run(go())


def arrears(url: str, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, [*args, "--database-url", url])
    assert result.exit_code == code, result.output
    return result.output


def actions(url: str) -> list[dict[str, Any]]:
    return db(url, lambda c: list_entries(c, "console"))  # type: ignore[no-any-return]


def test_sending_halt_status_and_resume_from_the_cli(fresh_database_url: Callable[..., str]) -> None:
    url = fresh_database_url("incident_cli_halts")
    upgrade(url, "console")
    assert "no halt in force" in arrears(url, "sending", "status")
    out = arrears(url, "sending", "halt", "--campaign", "spring-push", "--reason", "wrong amounts")
    assert out.startswith("HALTED") and "campaign spring-push" in out
    arrears(url, "sending", "halt", "--all", "--reason", "provider breach")
    again = arrears(url, "sending", "halt", "--all", "--reason", "twice", code=1)
    assert "already halted" in again
    arrears(url, "sending", "halt", "--all", "--channel", "sms", "--reason", "two scopes", code=2)
    arrears(url, "sending", "halt", "--channel", "pigeon", "--reason", "unknown", code=2)
    status = arrears(url, "sending", "status")
    assert "all sending" in status and "campaign spring-push" in status
    active = db(url, halts.active)
    assert {(h.scope, h.target) for h in active} == {("all", ""), ("campaign", "spring-push")}
    assert "RESUMED all sending" in arrears(url, "sending", "resume", "--all", "--reason", "contained")
    campaign = next(h for h in active if h.scope == "campaign")
    arrears(url, "sending", "resume", campaign.halt_id, "--reason", "fixed")
    arrears(url, "sending", "resume", campaign.halt_id, "--reason", "fixed", code=1)
    assert "no halt in force" in arrears(url, "sending", "status")
    assert "was" in arrears(url, "sending", "status", "--history")
    done = [(e["action"], e["reason"]) for e in actions(url) if e["entity"] == "sending_halt"]
    assert sorted(done) == sorted(
        [
            ("sending.halt", "wrong amounts"),
            ("sending.halt", "provider breach"),
            ("sending.resume", "contained"),
            ("sending.resume", "fixed"),
        ]
    )
    assert all(e["actor"].startswith("cli:") for e in actions(url))
    assert db(url, lambda c: verify(c, "console")).ok


def test_break_glass_revoke_all_prints_a_new_admin_key_and_keeps_what_is_asked(
    fresh_database_url: Callable[..., str],
) -> None:
    url = fresh_database_url("incident_cli_keys")
    upgrade(url, "console")
    made = {
        role: issue_key(url, role, name=f"cli-{role}", migrate=False)
        for role in ("collector", "admin", "service")
    }

    async def works(conn: Any, key: str) -> bool:
        return await keys.authenticate(conn, key) is not None

    out = arrears(
        url,
        "keys",
        "revoke-all",
        "--reason",
        "repo leak",
        "--keep",
        "cli-service",
        "--new-admin",
        "glass",
        "--yes",
    )
    assert "revoked 2 keys" in out and f"kept {keys.parse(made['service'])}" in out
    new_key = next(line for line in out.splitlines() if line.startswith("ark_") and "…" not in line)
    assert not db(url, lambda c: works(c, made["collector"])) and not db(
        url, lambda c: works(c, made["admin"])
    )
    assert db(url, lambda c: works(c, made["service"])) and db(url, lambda c: works(c, new_key))
    [entry] = [e for e in actions(url) if e["action"] == "api_key.revoke_all"]
    assert entry["reason"] == "repo leak" and sorted(entry["after"]["revoked"]) == sorted(
        keys.parse(made[r]) for r in ("collector", "admin")
    )
    assert new_key not in str(actions(url))  # the plaintext is never in the audit log
    # a lock listed and lifted from the CLI
    glass_id = keys.parse(new_key) or ""
    db(url, lambda c: lockout.record_failure(c, glass_id, lockout.LockoutPolicy(threshold=1)))
    assert glass_id in arrears(url, "keys", "locks")
    assert "unlocked" in arrears(url, "keys", "unlock", "glass", "--reason", "my typo")
    assert "no key is locked" in arrears(url, "keys", "locks")
