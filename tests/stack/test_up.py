"""`arrears up` as a user runs it: everything comes up with demo data, Ctrl-C stops it all within 10 s and
leaves no process behind, and a second run reuses the PostgreSQL data directory."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

ARREARS = str(Path(sys.executable).with_name("arrears"))


class Up:
    """`arrears up` in its own session (as from a terminal), its output collected by a thread."""

    def __init__(self, data_dir: Path, accounts: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARREARS_")}
        self.proc = subprocess.Popen(
            [ARREARS, "up", "--data-dir", str(data_dir), "--accounts", str(accounts), "--partitions", "2"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := rx.search(line):
                    return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        tail = "\n".join(self.lines[-40:])
        raise AssertionError(f"no line matching {pattern!r} (exit {self.proc.poll()}); last output:\n{tail}")

    def tail_about(self, name: str, lines: int = 60) -> str:
        """The summary and the last lines that mention `name` (its own log lines carry its name)."""
        start = next((i for i, line in enumerate(self.lines) if "Arrears is running" in line), 0)
        summary = self.lines[start : start + 25]
        about = [line for line in self.lines if name in line][-lines:]
        return "\n".join(["-- summary --", *summary, f"-- lines about {name} --", *about])

    def descendants(self) -> list[int]:
        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def test_arrears_up_runs_everything_and_ctrl_c_stops_it_all(tmp_path: Path) -> None:
    data = tmp_path / "data"
    up = Up(data, accounts=300)
    try:
        up.wait_for(r"Arrears is running", timeout=200)
        console = up.wait_for(r"Console\s+(http://\S+)/", 5).group(1)
        assert httpx.get(console + "/healthz", timeout=10).status_code == 200
        for svc in (
            "ingest",
            "segmenter",
            "dispatcher-sms",
            "dispatcher-email",
            "responses",
            "escalation",
            "portal",
            "scoring",
        ):
            url = up.wait_for(rf"^\s+{svc}\s+(http://\S+)\s", 5).group(1)
            try:
                status = httpx.get(url + "/metrics", timeout=10).status_code
            except httpx.HTTPError as exc:
                raise AssertionError(f"{svc} /metrics: {exc!r}\n{up.tail_about(svc)}") from exc
            assert status == 200, f"{svc} /metrics: {status}\n{up.tail_about(svc)}"
        # the first admin key is written for the operator (0600) and shown nowhere else
        key_file = data / "admin-api-key"
        assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"
        admin_key = key_file.read_text().strip()
        assert admin_key.startswith("ark_") and not any(admin_key in line for line in up.lines)
        assert httpx.get(console + "/api/summary", timeout=10).status_code == 401
        # the demo sheet flows: the console sees the accounts ingest accepted
        deadline = time.monotonic() + 60
        accounts = 0
        while time.monotonic() < deadline and accounts < 250:
            r = httpx.get(
                console + "/api/summary", headers={"Authorization": f"Bearer {admin_key}"}, timeout=10
            )
            assert r.status_code == 200, r.text
            accounts = r.json().get("accounts", 0)
            time.sleep(0.5)
        assert accounts >= 250, f"only {accounts} of ~290 valid demo accounts reached the console"

        children = up.descendants()
        assert len(children) >= 11, children  # broker, postgres, 3 emulators, 7 services
        started = time.monotonic()
        os.killpg(up.proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole foreground group
        up.proc.wait(timeout=15)
        took = time.monotonic() - started
        assert took < 10, f"arrears up took {took:.1f}s to stop"
        assert up.proc.returncode == 0, up.proc.returncode
        assert alive(children) == [], "processes outlived arrears up"
        assert not any("SIGKILL" in line for line in up.lines), "a service had to be killed"
    finally:
        up.kill()

    # a second run reuses the data directory: no new initdb
    version = (data / "pg" / "PG_VERSION").stat().st_mtime_ns
    again = Up(data, accounts=0)
    try:
        again.wait_for(r"Arrears is running", timeout=150)
        assert (data / "pg" / "PG_VERSION").stat().st_mtime_ns == version
        os.killpg(again.proc.pid, signal.SIGINT)
        again.proc.wait(timeout=15)
    finally:
        again.kill()
