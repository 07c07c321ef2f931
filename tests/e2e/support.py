"""What every end-to-end module shares: a whole platform started as processes, credentials for its APIs,
and diagnostics on failure."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from arrears_cli.stack.platform import Platform
from arrears_cli.stack.postgres import EmbeddedPostgres
from arrears_shared import topology
from auth_support import bearer, issue_key

# faster clocks than production; ingest runs only when a test asks (no start-up poll racing the test)
BASE_OVERRIDES: dict[str, dict[str, str]] = {
    "ingest": {"ARREARS_INGEST_POLL_INTERVAL_S": "3600"},
    "segmenter": {"ARREARS_SEGMENTER_TICK_S": "0.3"},
    "escalation": {"ARREARS_ESCALATION_TICK_S": "0.3"},
    # no demo model: a score would re-plan a scenario's steps to the model's best hour and give high-risk
    # accounts a recovery task of their own, a minute into the run (tests/scoring covers the scores)
    "scoring": {"ARREARS_SCORING_DEMO_MODEL": "false"},
}


_keys: dict[tuple[str, str], str] = {}


def key_for(p: Platform, role: str = "admin") -> str:
    """An API key with `role` on this platform: the stack's own first admin key, or one issued (once per
    platform and role) in its `iam` schema, so each call can use the narrowest role that may make it."""
    if role == "admin":
        assert p.admin_api_key.startswith("ark_"), "the platform issued no admin API key"
        return p.admin_api_key
    cached = (p.database_url, role)
    if cached not in _keys:
        _keys[cached] = issue_key(p.database_url, role, migrate=False)  # `iam` is migrated by the platform
    return _keys[cached]


def auth(p: Platform, role: str = "admin") -> dict[str, str]:
    """`Authorization: Bearer <key>` headers for a caller with `role`."""
    return bearer(key_for(p, role))


@contextmanager
def running_platform(
    pg: EmbeddedPostgres,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    overrides: dict[str, dict[str, str]] | None = None,
    every_service: dict[str, str] | None = None,
) -> Iterator[Platform]:
    """Its own broker (consumer groups start clean), the session's PostgreSQL with a fresh database.
    `overrides` is per service; `every_service` is given to all of them (e.g. the identity provider)."""
    merged = {svc: dict(every_service or {}) for svc in topology.services()}
    for svc, env in BASE_OVERRIDES.items():
        merged[svc].update(env)
    for svc, env in (overrides or {}).items():
        merged.setdefault(svc, {}).update(env)
    p = Platform(
        tmp_path_factory.mktemp(name),
        partitions=3,
        postgres=pg,
        database=f"{name.replace('-', '_')}_{int(time.time() * 1000) % 10**9}",
        log_dir=tmp_path_factory.mktemp(f"{name}-logs"),
        service_overrides=merged,
    )
    try:
        p.start(timeout=90)
        yield p
    except BaseException:
        dump_logs(p)
        raise
    finally:
        p.stop()


def dump_logs(p: Platform) -> None:
    for name, proc in p.supervisor.processes.items():
        print(f"----- {name} -----")
        for line in proc.recent_output(60):
            print(line)


def run_explained(p: Platform, scenario: Callable[[Platform], None], account_ids: list[str]) -> None:
    """Run a scenario; if it fails, print the services' recent logs and the segmenter's view of each account."""
    try:
        scenario(p)
    except BaseException:
        dump_logs(p)
        for aid in account_ids:
            for path in ("", "/decisions"):
                try:
                    r = httpx.get(
                        f"{p.service_url('segmenter')}/accounts/{aid}{path}", headers=auth(p), timeout=10
                    )
                    print(aid, path, r.status_code, r.text[:3000])
                except httpx.HTTPError as e:  # the segmenter may be what failed: keep the original error
                    print(aid, path, "segmenter unreachable:", type(e).__name__)
        raise
