"""Child processes that never outlive us.

Every child is started

* with Linux `prctl(PR_SET_PDEATHSIG, sig)` set in the child right before `exec` (after any `setuid`, which
  would clear it), so it receives `sig` the moment we die — even when we are SIGKILLed and no Python cleanup
  runs;
* from one long-lived "spawner" thread: the kernel sends the parent-death signal when the *thread* that forked
  the child exits, so forking from a short-lived worker thread (`asyncio.to_thread`, a pool) would kill the
  child early;
* in its own process group (`kill`/`stop` signal the whole group, so grandchildren go too).

Output is either streamed to our stdout, one line at a time prefixed with the process name (JSON log lines
are rendered compactly), or written straight to `<log_dir>/<name>.log`.

`Supervisor` is a named set of such processes with `kill`, `restart`, optional restart-with-backoff of
processes that die unexpectedly, and an idempotent `stop_all` registered with `atexit`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar

from arrears_cli.stack.ports import port_open

T = TypeVar("T")

PR_SET_PDEATHSIG = 1
_LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


class ProcessExitedError(RuntimeError):
    """A process exited while we were waiting for it to become ready."""


# --------------------------------------------------------------------------------------------------------------
# async <-> sync helpers


def call_in_fresh_thread(fn: Callable[[], Any]) -> Any:
    """Run `fn()` in a new thread; if it returns an awaitable, run that to completion with `asyncio.run` there.

    Works whether or not the calling thread already runs an event loop (pytest-asyncio, the e2e tests).
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            result = fn()
            if asyncio.iscoroutine(result):
                result = asyncio.run(result)
            elif isinstance(result, Awaitable):
                aw: Awaitable[Any] = result

                async def _await() -> Any:
                    return await aw

                result = asyncio.run(_await())
            box["result"] = result
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="arrears-sync-call", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


def run_coro_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine made by `factory()` to completion from synchronous code.

    Uses `asyncio.run` directly when no loop runs in this thread, else a fresh thread with its own loop.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())
    result: T = call_in_fresh_thread(factory)
    return result


# --------------------------------------------------------------------------------------------------------------
# spawning


class _Spawner:
    """One daemon thread that forks every child (see the module docstring for why)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def call(self, fn: Callable[[], T]) -> T:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="arrears-spawner", daemon=True)
                self._thread.start()
        if threading.current_thread() is self._thread:
            return fn()
        fut: Future[T] = Future()
        self._jobs.put((fn, fut))
        return fut.result()

    def _run(self) -> None:
        while True:
            fn, fut = self._jobs.get()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)


_SPAWNER = _Spawner()


def _preexec(deathsig: int, parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:  # runs in the child between fork and exec, after setuid/setgid
        if _LIBC is not None:
            _LIBC.prctl(PR_SET_PDEATHSIG, int(deathsig), 0, 0, 0)
        if os.getppid() != parent_pid:  # we died before prctl took effect
            os._exit(1)

    return preexec


# --------------------------------------------------------------------------------------------------------------
# output


_COLORS = ("36", "32", "33", "35", "34", "96", "92", "93", "95", "94")
_LEVEL_KEYS = ("level", "levelname", "severity")
_MESSAGE_KEYS = ("event", "message", "msg")
_DROP_KEYS = {
    "timestamp",
    "ts",
    "time",
    "color_message",
    "@timestamp",
    "service",
    "service_name",
    *_LEVEL_KEYS,
    *_MESSAGE_KEYS,
}


def render_line(line: str) -> str:
    """A child's output line made readable: JSON log records become `LEVEL message key=value ...`."""
    stripped = line.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return line
    try:
        record = json.loads(stripped)
    except ValueError:
        return line
    if not isinstance(record, dict):
        return line
    level = next((str(record[k]) for k in _LEVEL_KEYS if k in record), "")
    message = next((str(record[k]) for k in _MESSAGE_KEYS if k in record), "")
    extras = " ".join(
        f"{k}={v if isinstance(v, str | int | float | bool) else json.dumps(v, default=str)}"
        for k, v in record.items()
        if k not in _DROP_KEYS
    )
    return " ".join(part for part in (f"{level.upper():<7}" if level else "", message, extras) if part)


class LogSink:
    """Writes children's lines to a stream, each prefixed with the child's name (coloured on a terminal)."""

    def __init__(self, stream: IO[str] | None = None, *, pretty: bool = True, name_width: int = 16) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._pretty = pretty
        self._width = name_width
        self._colors: dict[str, str] = {}

    @property
    def stream(self) -> IO[str]:
        return self._stream if self._stream is not None else sys.stdout

    def _prefix(self, name: str) -> str:
        label = f"{name:<{self._width}}|"
        if not getattr(self.stream, "isatty", lambda: False)():
            return label
        color = self._colors.setdefault(name, _COLORS[len(self._colors) % len(_COLORS)])
        return f"\x1b[{color}m{label}\x1b[0m"

    def write(self, name: str, line: str) -> None:
        text = render_line(line) if self._pretty else line
        with self._lock:
            try:
                self.stream.write(f"{self._prefix(name)} {text}\n")
                self.stream.flush()
            except (ValueError, OSError):  # stream closed during interpreter shutdown
                pass


# --------------------------------------------------------------------------------------------------------------
# one process


@dataclass
class ProcessSpec:
    """How to (re)start one child."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None  # laid over os.environ (inherit_env) or used alone
    cwd: Path | None = None
    user: str | None = None  # run as this system user (we must be root)
    deathsig: int = signal.SIGTERM  # what the child gets when we die
    stop_signal: int = signal.SIGTERM  # graceful stop
    auto_restart: bool = False  # restart with backoff when it dies unexpectedly (Supervisor)
    inherit_env: bool = True
    log_file: Path | None = None  # None -> stream lines to the sink
    extra: dict[str, Any] = field(default_factory=dict)


class ManagedProcess:
    """A child process (re)started from a `ProcessSpec`."""

    MAX_LINES = 5000

    def __init__(self, spec: ProcessSpec, *, sink: LogSink | None = None) -> None:
        self.spec = spec
        self.sink = sink or LogSink()
        self._popen: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lines: deque[str] = deque(maxlen=self.MAX_LINES)
        self._cond = threading.Condition()
        self._log_offset = 0
        self._eof = True
        self.started_at = 0.0
        self.starts = 0
        self.expected_exit = True  # False while running; True once we stop/kill it on purpose
        self.held = False  # Supervisor: don't auto-restart (set by kill())

    # -- state ------------------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def is_alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def recent_output(self, n: int = 40) -> list[str]:
        """The last `n` output lines of the current run (from the log file when logging to a file)."""
        if self.spec.log_file is not None:
            return self._read_log()[-n:]
        with self._cond:
            return list(self._lines)[-n:]

    # -- start / stop -----------------------------------------------------------------------------------------

    def start(self) -> ManagedProcess:
        if self.is_alive():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        spec = self.spec
        env = {**os.environ, **(spec.env or {})} if spec.inherit_env else dict(spec.env or {})
        env.setdefault("PYTHONUNBUFFERED", "1")
        log_handle: IO[bytes] | None = None
        if spec.log_file is not None:
            spec.log_file.parent.mkdir(parents=True, exist_ok=True)
            log_handle = open(spec.log_file, "ab")  # noqa: SIM115 - handed to the child, closed below
            self._log_offset = log_handle.tell()
        with self._cond:
            self._lines.clear()
            self._eof = False
        parent = os.getpid()

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                list(spec.argv),
                env=env,
                cwd=spec.cwd,
                user=spec.user,
                stdin=subprocess.DEVNULL,
                stdout=log_handle if log_handle is not None else subprocess.PIPE,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=_preexec(spec.deathsig, parent),
                close_fds=True,
            )

        try:
            self._popen = _SPAWNER.call(spawn)
        finally:
            if log_handle is not None:
                log_handle.close()
        self.started_at = time.monotonic()
        self.starts += 1
        self.expected_exit = False
        self.held = False
        if log_handle is None:
            assert self._popen.stdout is not None
            self._reader = threading.Thread(
                target=self._pump, args=(self._popen.stdout,), name=f"arrears-out-{self.name}", daemon=True
            )
            self._reader.start()
        else:
            self._eof = True
        return self

    def _pump(self, pipe: IO[bytes]) -> None:
        try:
            for raw in iter(pipe.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                with self._cond:
                    self._lines.append(line)
                    self._cond.notify_all()
                self.sink.write(self.name, line)
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                pipe.close()
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def send_signal(self, sig: int, *, group: bool = True) -> bool:
        """Signal the process (and its process group). False if it is not running."""
        popen = self._popen
        if popen is None or popen.poll() is not None:
            if group and popen is not None:  # leftovers of the group (e.g. grandchildren)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(popen.pid, sig)
            return False
        try:
            if group:
                os.killpg(popen.pid, sig)
            else:
                popen.send_signal(sig)
        except ProcessLookupError:
            return False
        return True

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the process group (a crash as far as auto-restart is concerned; see Supervisor.kill)."""
        self.send_signal(sig)

    def begin_stop(self) -> None:
        """Send the stop signal without waiting (see `finish_stop`)."""
        self.expected_exit = True
        if self.is_alive():
            self.send_signal(signal.SIGCONT)  # a paused process cannot act on SIGTERM
            self.send_signal(self.spec.stop_signal, group=False)

    def finish_stop(self, deadline: float) -> None:
        """Wait until `deadline` (monotonic) for the exit, then SIGKILL the group; reap; join the reader."""
        popen = self._popen
        if popen is None:
            return
        try:
            popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.sink.write("supervisor", f"{self.name} (pid {popen.pid}) did not stop in time; SIGKILL")
            self.send_signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                popen.wait(timeout=5)
        # whatever else is left in its process group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)
        if self._reader is not None:
            self._reader.join(timeout=2)

    def stop(self, timeout: float = 8.0) -> None:
        """Graceful stop: stop signal, wait up to `timeout`, SIGKILL leftovers, reap. Idempotent."""
        self.begin_stop()
        self.finish_stop(time.monotonic() + timeout)

    def restart(self, timeout: float = 8.0) -> ManagedProcess:
        self.stop(timeout)
        return self.start()

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the process to exit; its return code (None on timeout)."""
        if self._popen is None:
            return None
        try:
            return self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    # -- readiness --------------------------------------------------------------------------------------------

    def _exited_error(self, waiting_for: str) -> ProcessExitedError:
        tail = "\n".join(f"    {line}" for line in self.recent_output(30))
        return ProcessExitedError(
            f"{self.name} exited with code {self.returncode} while waiting for {waiting_for}; last output:\n{tail}"
        )

    def _read_log(self) -> list[str]:
        if self.spec.log_file is None:
            return []
        try:
            with open(self.spec.log_file, "rb") as fh:
                fh.seek(self._log_offset)
                data = fh.read()
        except OSError:
            return []
        return data.decode("utf-8", "replace").splitlines()

    def wait_for_line(self, pattern: str | re.Pattern[str], timeout: float = 30.0) -> str:
        """Wait until the current run prints a line matching `pattern` (re.search); return that line."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        if self.spec.log_file is not None:
            while True:
                for line in self._read_log():
                    if rx.search(line):
                        return line
                if not self.is_alive():
                    raise self._exited_error(f"a line matching {rx.pattern!r}")
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{self.name}: no line matching {rx.pattern!r} within {timeout}s")
                time.sleep(0.05)
        seen = 0
        with self._cond:
            while True:
                lines = list(self._lines)
                for line in lines[seen:]:
                    if rx.search(line):
                        return line
                seen = len(lines)
                if self._eof and not self.is_alive():
                    raise self._exited_error(f"a line matching {rx.pattern!r}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{self.name}: no line matching {rx.pattern!r} within {timeout}s")
                self._cond.wait(timeout=min(remaining, 0.25))

    def wait_http_ok(self, url: str, timeout: float = 30.0, *, fail_on_exit: bool = True) -> None:
        """Wait until GET `url` answers 2xx. Raises ProcessExitedError if the process dies first."""
        deadline = time.monotonic() + timeout
        while True:
            if fail_on_exit and not self.is_alive():
                raise self._exited_error(f"{url} to answer 200")
            if http_ok(url):
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name}: {url} did not answer 200 within {timeout}s")
            time.sleep(0.05)

    def wait_tcp(self, host: str, port: int, timeout: float = 30.0) -> None:
        """Wait until the process accepts TCP connections on host:port."""
        deadline = time.monotonic() + timeout
        while not port_open(host, port):
            if not self.is_alive():
                raise self._exited_error(f"{host}:{port} to accept connections")
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.name}: {host}:{port} not accepting connections within {timeout}s")
            time.sleep(0.02)


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when GET `url` answers with a 2xx status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - local URLs we built
            status: int = resp.status
            return 200 <= status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def wait_http_ok(url: str, timeout: float = 30.0) -> None:
    """Wait until GET `url` answers 2xx (no process attached)."""
    deadline = time.monotonic() + timeout
    while not http_ok(url):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout}s")
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------------------------
# supervisor


_signal_handlers_installed = False


def install_termination_handler() -> None:
    """Turn SIGTERM (and SIGHUP) into SystemExit when they still have their default action, so `finally`
    blocks and `atexit` hooks (Supervisor.stop_all) run. SIGINT already raises KeyboardInterrupt.
    Only possible from the main thread; a no-op elsewhere."""
    global _signal_handlers_installed
    if _signal_handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    _signal_handlers_installed = True

    def to_exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, to_exit)


class Supervisor:
    """A named set of child processes that all stop together.

    `stop_all` is registered with `atexit`; SIGTERM/SIGHUP are turned into SystemExit (if nobody else
    handles them) so it also runs on those. A SIGKILL of this process cannot be caught: there the
    children's parent-death signal takes over.
    """

    def __init__(
        self,
        *,
        log_dir: Path | None = None,
        sink: LogSink | None = None,
        restart_backoff: tuple[float, float] = (0.5, 15.0),
        install_signal_handlers: bool = True,
    ) -> None:
        self.log_dir = log_dir
        self.sink = sink or LogSink()
        self._procs: dict[str, ManagedProcess] = {}
        self._lock = threading.RLock()
        self._stopping = False
        self._backoff = restart_backoff
        self._failures: dict[str, int] = {}
        self._next_restart: dict[str, float] = {}
        self._monitor: threading.Thread | None = None
        self._monitor_stop = threading.Event()
        atexit.register(self.stop_all)
        if install_signal_handlers:
            install_termination_handler()

    # -- registry ---------------------------------------------------------------------------------------------

    def __getitem__(self, name: str) -> ManagedProcess:
        return self._procs[name]

    def __contains__(self, name: object) -> bool:
        return name in self._procs

    @property
    def processes(self) -> dict[str, ManagedProcess]:
        return dict(self._procs)

    def pids(self) -> dict[str, int | None]:
        return {name: proc.pid if proc.is_alive() else None for name, proc in self._procs.items()}

    # -- lifecycle --------------------------------------------------------------------------------------------

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        deathsig: int = signal.SIGTERM,
        stop_signal: int = signal.SIGTERM,
        auto_restart: bool = False,
        log_to_file: bool | None = None,
    ) -> ManagedProcess:
        """Start a child under `name` (a name in use by a stopped process is reused)."""
        to_file = self.log_dir is not None if log_to_file is None else log_to_file
        if to_file and self.log_dir is None:
            raise ValueError("log_to_file needs a Supervisor log_dir")
        spec = ProcessSpec(
            name=name,
            argv=list(argv),
            env=env,
            cwd=cwd,
            user=user,
            deathsig=deathsig,
            stop_signal=stop_signal,
            auto_restart=auto_restart,
            log_file=(self.log_dir / f"{name}.log") if to_file and self.log_dir is not None else None,
        )
        return self.add(spec)

    def add(self, spec: ProcessSpec) -> ManagedProcess:
        with self._lock:
            if self._stopping:
                raise RuntimeError("supervisor is stopped")
            existing = self._procs.get(spec.name)
            if existing is not None and existing.is_alive():
                raise RuntimeError(f"{spec.name} is already running (pid {existing.pid})")
            proc = ManagedProcess(spec, sink=self.sink)
            self._procs[spec.name] = proc
            proc.start()
            if spec.auto_restart:
                self._ensure_monitor()
            return proc

    def kill(self, name: str, sig: int = signal.SIGKILL, *, hold: bool = True) -> None:
        """Signal a process group (tests: SIGKILL a service, SIGSTOP/SIGCONT the broker).
        With `hold`, a process killed this way is not auto-restarted until `restart(name)`."""
        proc = self._procs[name]
        proc.held = proc.held or hold
        proc.kill(sig)

    def stop(self, name: str, timeout: float = 8.0) -> None:
        self._procs[name].stop(timeout)

    def restart(self, name: str, timeout: float = 8.0) -> ManagedProcess:
        """Stop (if running) and start again with the same spec."""
        with self._lock:
            proc = self._procs[name]
            proc.restart(timeout)
            self._next_restart.pop(name, None)
            return proc

    def stop_many(self, names: Sequence[str], timeout: float = 8.0) -> None:
        """Stop several processes concurrently (stop signal to all, one shared deadline)."""
        procs = [self._procs[n] for n in names if n in self._procs]
        for proc in procs:
            proc.begin_stop()
        deadline = time.monotonic() + timeout
        for proc in procs:
            proc.finish_stop(deadline)

    def stop_all(self, timeout: float = 8.0) -> None:
        """Stop everything: stop signal to all, wait up to `timeout`, SIGKILL leftovers, reap. Idempotent."""
        with self._lock:
            self._stopping = True
        self._monitor_stop.set()
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join(timeout=2)
        self.stop_many(list(reversed(self._procs)), timeout)

    # -- restart with backoff ---------------------------------------------------------------------------------

    def _ensure_monitor(self) -> None:
        if self._monitor is None or not self._monitor.is_alive():
            self._monitor = threading.Thread(target=self._watch, name="arrears-supervisor", daemon=True)
            self._monitor.start()

    def _watch(self) -> None:
        base, cap = self._backoff
        while not self._monitor_stop.wait(0.2):
            now = time.monotonic()
            for name, proc in list(self._procs.items()):
                if not proc.spec.auto_restart or proc.held or proc.expected_exit or proc.is_alive():
                    if proc.is_alive() and now - proc.started_at > 30:
                        self._failures.pop(name, None)  # ran long enough: reset the backoff
                    continue
                when = self._next_restart.get(name)
                if when is None:
                    failures = self._failures.get(name, 0) + 1
                    self._failures[name] = failures
                    delay = min(cap, base * 2 ** (failures - 1))
                    self._next_restart[name] = now + delay
                    self.sink.write(
                        "supervisor",
                        f"{name} (pid {proc.pid}) exited unexpectedly with code {proc.returncode}; "
                        f"restarting in {delay:.1f}s (attempt {failures})",
                    )
                    continue
                if now < when:
                    continue
                with self._lock:
                    if self._stopping:
                        return
                    self._next_restart.pop(name, None)
                    if proc.is_alive() or proc.expected_exit or proc.held:
                        continue
                    try:
                        proc.finish_stop(time.monotonic())  # reap, clear its process group
                        proc.start()
                        self.sink.write("supervisor", f"restarted {name} (pid {proc.pid})")
                    except OSError as exc:
                        self.sink.write("supervisor", f"could not restart {name}: {exc}")
                        proc.expected_exit = False


class StartStop:
    """`with` / `async with` for a component with blocking `start() -> Self` and `stop()` (the async forms run
    them in a thread)."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)
