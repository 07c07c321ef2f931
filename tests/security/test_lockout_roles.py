"""The incident tables under least privilege (db/roles.py), on the real server with per-service roles: a
dispatcher's runtime role reads the sending halts in its claim (and takes their lock) but cannot set or lift
one; any service's role counts a failed sign-in and appends security events but cannot erase them; only the
console's role writes halts and unlocks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from arrears_shared.auth import lockout
from arrears_shared.control import halts
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade_all
from arrears_shared.db.roles import ensure_roles
from sqlalchemy import text

from .test_db_roles import as_role, refused

SERVICES = ("console", "dispatcher-sms", "escalation")


@pytest.fixture(scope="module")
def admin_url(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("incident_roles")

    async def roles() -> None:
        engine = make_engine(url)
        try:
            await ensure_roles(engine, SERVICES, {})
        finally:
            await engine.dispose()

    asyncio.run(roles())
    upgrade_all(url)
    return url


def test_only_the_console_sets_halts_and_every_dispatcher_reads_them(admin_url: str) -> None:
    async def set_one(conn: Any) -> halts.Halt:
        return await halts.set_halt(conn, "channel", "sms", reason="roles drill", by="tests")

    halt = as_role(admin_url, "console", set_one)
    read = as_role(admin_url, "dispatcher-sms", halts.for_claim)
    assert read.matching("sms", None) == halt
    refused(admin_url, "dispatcher-sms", "UPDATE iam.sending_halts SET cleared_at = now()")
    refused(
        admin_url,
        "escalation",
        "INSERT INTO iam.sending_halts (scope, reason, set_by) VALUES ('all', 'xyz', 'x')",
    )
    refused(admin_url, "dispatcher-sms", "DELETE FROM iam.security_events")
    refused(admin_url, "escalation", "UPDATE iam.security_events SET kind = 'x'")


def test_any_service_counts_failed_sign_ins_and_only_the_console_unlocks(admin_url: str) -> None:
    policy = lockout.LockoutPolicy(threshold=2)

    async def fail_twice(conn: Any) -> bool:
        await lockout.record_failure(conn, "abcdefabcdef", policy, service="escalation")
        return await lockout.record_failure(conn, "abcdefabcdef", policy, service="escalation")

    assert as_role(admin_url, "escalation", fail_twice) is True
    refused(admin_url, "escalation", "DELETE FROM iam.sign_in_locks")

    async def unlock(conn: Any) -> lockout.Lock | None:
        return await lockout.unlock(conn, "abcdefabcdef", by="tests")

    assert as_role(admin_url, "console", unlock) is not None


def test_any_service_flushes_and_prunes_its_account_read_counts(admin_url: str) -> None:
    """The unusual-access flush (auth/unusual_access.py) runs at every service with its runtime role: it adds
    its per-minute counts and, once an hour, prunes buckets older than the baseline. A missing privilege
    would fail the whole flush, so no read would ever be counted at that service."""

    async def flush_and_prune(conn: Any) -> int:
        await conn.execute(
            text(
                "INSERT INTO iam.access_counts (principal, bucket, role, accounts)"
                " VALUES ('roles-drill', now() - interval '30 days', 'collector', 3)"
            )
        )
        gone = await conn.execute(
            text("DELETE FROM iam.access_counts WHERE bucket < now() - make_interval(secs => 86400)")
        )
        return int(gone.rowcount)

    for svc in ("dispatcher-sms", "escalation"):
        assert as_role(admin_url, svc, flush_and_prune) == 1
