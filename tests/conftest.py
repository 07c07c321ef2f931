"""Session-wide embedded infrastructure for the test suite.

* `broker` — a Tansu broker (EmbeddedBroker) with every Arrears topic created with 3 partitions.
* `pg` — an EmbeddedPostgres (fsync off) in a temporary data dir.
* `fresh_database_url` — a factory: `fresh_database_url(prefix="t", migrate=False) -> url` creates a new,
  empty database (migrated with `arrears_shared.db.migrate.upgrade_all` when `migrate=True`).
* `database_url` — one fresh database per test module.

Children's output goes to `<tmp>/stack-logs/<name>.log` (the path is printed at the end of the session).
At session end, any child process of the test run still alive is reported, killed, and fails the run.
"""

from __future__ import annotations

import importlib
import itertools
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from arrears_cli.stack.broker import EmbeddedBroker
from arrears_cli.stack.postgres import EmbeddedPostgres
from arrears_cli.stack.processes import Supervisor, run_coro_sync
from arrears_cli.stack.topics import ensure_topics

TEST_PARTITIONS = 3
# the audit chain's HMAC key (arrears_shared.audit.keyring) for everything the tests start, children included
os.environ.setdefault("ARREARS_AUDIT_HMAC_KEY", "arrears-test-audit-key-0123456789abcdef")
# the personal-data vault (arrears_shared.vault): master key = base64 of 32 bytes, index key >= 32 chars
os.environ.setdefault("ARREARS_VAULT_MASTER_KEY", "YXJyZWFycy10ZXN0LXZhdWx0LW1hc3Rlci1rZXktMzI=")
os.environ.setdefault("ARREARS_VAULT_INDEX_KEY", "arrears-test-vault-index-key-0123456789abcdef")
_db_counter = itertools.count(1)
_LOG_DIR_KEY = pytest.StashKey[Path]()


@pytest.fixture(scope="session")
def stack_log_dir(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    path = tmp_path_factory.mktemp("stack-logs")
    pytestconfig.stash[_LOG_DIR_KEY] = path
    return path


@pytest.fixture(scope="session")
def stack_supervisor(stack_log_dir: Path) -> Iterator[Supervisor]:
    supervisor = Supervisor(log_dir=stack_log_dir)
    yield supervisor
    supervisor.stop_all()


@pytest.fixture(scope="session")
def broker(stack_supervisor: Supervisor) -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(supervisor=stack_supervisor, name="test-broker").start()
    run_coro_sync(lambda: ensure_topics(b.bootstrap_servers, TEST_PARTITIONS))
    yield b
    b.stop()


@pytest.fixture(scope="session")
def pg(stack_supervisor: Supervisor, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(
        tmp_path_factory.mktemp("pgdata") / "pg", fast=True, supervisor=stack_supervisor, name="test-postgres"
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fresh_database_url(pg: EmbeddedPostgres) -> Callable[..., str]:
    """`fresh_database_url(prefix="t", *, migrate=False) -> str`: a new empty database's URL."""

    def make(prefix: str = "t", *, migrate: bool = False) -> str:
        safe = re.sub(r"[^a-z0-9_]", "_", prefix.lower())[:40] or "t"
        url = pg.create_database(f"{safe}_{os.getpid()}_{next(_db_counter)}", exist_ok=False)
        if migrate:
            importlib.import_module("arrears_shared.db.migrate").upgrade_all(url)
        return url

    return make


@pytest.fixture(scope="module")
def database_url(fresh_database_url: Callable[..., str], request: pytest.FixtureRequest) -> str:
    """A fresh (empty) database for this test module."""
    return fresh_database_url(request.module.__name__.rsplit(".", 1)[-1])


@pytest.fixture
def checkout_emulator() -> Iterator[Callable[..., str]]:
    """A factory: `checkout_emulator(**CheckoutConfig fields) -> url` serves the Stripe-style checkout
    emulator in-process (docs/portal.md "Paying"); every one started is stopped after the test."""
    from arrears_emulators.checkout.app import CheckoutConfig, create_app
    from arrears_emulators.common import EmulatorServer

    servers: list[EmulatorServer] = []

    def start(**config: object) -> str:
        server = EmulatorServer(create_app(CheckoutConfig.model_validate(config)))
        server.start()
        servers.append(server)
        return server.url

    yield start
    for server in servers:
        server.stop()


# -- no process may outlive the test run ------------------------------------------------------------------------


def _live_children() -> list[psutil.Process]:
    alive = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.append(child)
        except psutil.NoSuchProcess:
            continue
    return alive


def _describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid} {' '.join(proc.cmdline())[:200]}"
    except psutil.Error:
        return f"pid {proc.pid}"


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    deadline = time.monotonic() + 5.0
    leftovers = _live_children()
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.1)
        leftovers = _live_children()
    log_dir = session.config.stash.get(_LOG_DIR_KEY, None)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if log_dir is not None and reporter is not None:
        reporter.write_line(f"embedded stack logs: {log_dir}")
    if not leftovers:
        return
    message = "child processes still alive at the end of the test run:\n" + "\n".join(
        f"  {_describe(p)}" for p in leftovers
    )
    if reporter is not None:
        reporter.write_line(message, red=True)
    else:
        print(message)
    for proc in leftovers:
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    psutil.wait_procs(leftovers, timeout=3)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
