"""The embedded dev stack: broker, PostgreSQL and process supervision."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from arrears_cli.stack.broker import EmbeddedBroker, kafka_reachable
from arrears_cli.stack.ports import free_port
from arrears_cli.stack.postgres import EmbeddedPostgres
from arrears_cli.stack.processes import ProcessExitedError, Supervisor
from arrears_cli.stack.topics import ensure_topics
from arrears_shared.settings import to_asyncpg_url
from arrears_shared.topology import all_topics
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

PY = sys.executable


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if not _gone(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [p for p in alive if not _gone(p)]
    return alive


# -- broker -----------------------------------------------------------------------------------------------------


async def test_all_topics_created(broker: EmbeddedBroker) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    await admin.start()
    try:
        present = set(await admin.list_topics())
        assert set(all_topics()) <= present
        meta = await admin.describe_topics(["notice-due", "notice-due.dispatcher-sms.dlq"])
        assert [len(t["partitions"]) for t in meta] == [3, 3]
    finally:
        await admin.close()
    # idempotent
    assert await ensure_topics(broker.bootstrap_servers, 3) == []


async def test_broker_produce_consume_and_group_commit(broker: EmbeddedBroker) -> None:
    topic = f"stack-test-{uuid.uuid4().hex[:8]}"
    assert await ensure_topics(broker.bootstrap_servers, 3, topics=[topic]) == [topic]
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for i in range(30):
            await producer.send(topic, key=f"k{i % 7}".encode(), value=f"v{i}".encode())
        await producer.flush()
    finally:
        await producer.stop()

    group = f"g-{topic}"

    async def consume_all(expect: int, within: float = 10.0) -> list[bytes]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=broker.bootstrap_servers,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Tansu answers a join after ~session_timeout/2, and aiokafka never sends LeaveGroup for
            # Tansu's generation 0, so the next member waits for the session to expire: keep it short.
            session_timeout_ms=1000,
            heartbeat_interval_ms=200,
        )
        await consumer.start()
        got: list[bytes] = []
        try:
            deadline = time.monotonic() + within
            while len(got) < expect and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    got += [r.value for r in records if r.value is not None]
                if expect == 0 and consumer.assignment():
                    break
            await consumer.commit()
            committed = {tp.partition: await consumer.committed(tp) for tp in consumer.assignment()}
            if expect:
                assert sum(o or 0 for o in committed.values()) == 30
        finally:
            await consumer.stop()
        return got

    values = await consume_all(30)
    assert sorted(values) == sorted(f"v{i}".encode() for i in range(30))
    # the same group resumes from its committed offsets: nothing left to read
    # (note: AIOKafkaAdminClient.list_consumer_group_offsets can't decode Tansu 0.6's answer; use committed())
    assert await consume_all(0, within=3.0) == []


def test_broker_pause_resume_restart() -> None:
    with EmbeddedBroker() as b:
        b.pause()
        with pytest.raises(Exception):  # noqa: B017 - any client error/timeout will do
            asyncio.run(asyncio.wait_for(kafka_reachable(b.bootstrap_servers, 0.5), 1.5))
        b.resume()
        asyncio.run(kafka_reachable(b.bootstrap_servers))
        port, first_pid = b.port, b.pid
        b.restart()
        assert b.port == port and b.pid != first_pid
        asyncio.run(kafka_reachable(b.bootstrap_servers))
        pid = b.pid
    assert pid is not None and _wait_gone([pid], 3) == []


# -- postgres ---------------------------------------------------------------------------------------------------


async def test_pg_fixture_and_fresh_databases(
    pg: EmbeddedPostgres, database_url: str, fresh_database_url: Callable[..., str]
) -> None:
    other = fresh_database_url("other")
    assert other != database_url
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("select current_setting('fsync')") == "off"
        await conn.execute("create table t (x int)")
    finally:
        await conn.close()
    engine = create_async_engine(to_asyncpg_url(other))
    try:
        async with engine.connect() as c:
            assert await c.scalar(text("select count(*) from pg_tables where tablename = 't'")) == 0
    finally:
        await engine.dispose()
    assert "?host=" in pg.url and len(str(pg.socket_dir)) < 100


def test_postgres_reuses_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "pg"
    t = time.monotonic()
    with EmbeddedPostgres(data, fast=True) as server:
        first_start = time.monotonic() - t
        url = server.create_database("keep")

        async def write() -> None:
            conn = await asyncpg.connect(url)
            await conn.execute("create table kept (v text); insert into kept values ('still here')")
            await conn.close()

        asyncio.run(write())
    version_mtime = (data / "PG_VERSION").stat().st_mtime_ns
    t = time.monotonic()
    with EmbeddedPostgres(data, fast=True) as server:
        second_start = time.monotonic() - t

        async def read() -> str:
            conn = await asyncpg.connect(server.dsn("keep"))
            try:
                return str(await conn.fetchval("select v from kept"))
            finally:
                await conn.close()

        assert asyncio.run(read()) == "still here"
        assert server.create_database("keep") == server.dsn("keep")  # exist_ok
        socket_dir = server.socket_dir
    assert (data / "PG_VERSION").stat().st_mtime_ns == version_mtime  # no second initdb
    assert socket_dir is not None and not socket_dir.exists()
    assert first_start < 30 and second_start < 20, (first_start, second_start)  # ~1 s and ~0.1 s when idle


def test_postgres_restart_keeps_every_url_it_gave_out(tmp_path: Path) -> None:
    """The chaos run restarts PostgreSQL under running services: their URLs must reach it again."""
    with EmbeddedPostgres(tmp_path / "pg", fast=True) as server:
        url = server.create_database("kept")

        async def one() -> int:
            conn = await asyncpg.connect(url)
            try:
                return int(await conn.fetchval("select 1"))
            finally:
                await conn.close()

        assert asyncio.run(one()) == 1
        server.restart()
        assert server.dsn("kept") == url
        assert asyncio.run(one()) == 1
        socket_dir = server.socket_dir
    assert socket_dir is not None and not socket_dir.exists()


def test_postgres_and_broker_die_with_a_sigkilled_parent(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from arrears_cli.stack.broker import EmbeddedBroker
        from arrears_cli.stack.postgres import EmbeddedPostgres
        pg = EmbeddedPostgres(Path({str(tmp_path / "pg")!r}), fast=True, log_file=Path({str(tmp_path / "pg.log")!r}))
        pg.start()
        broker = EmbeddedBroker().start()
        broker.pause()
        print(pg.pid, broker.pid, flush=True)
        time.sleep(120)
        """
    )
    parent = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        pg_pid, broker_pid = (int(x) for x in line.split())
        pg_children = [c.pid for c in psutil.Process(pg_pid).children()]
        assert pg_children, "postgres has no backends?"
        assert psutil.Process(pg_pid).ppid() == parent.pid
    finally:
        parent.kill()
        parent.wait()
    assert _wait_gone([pg_pid, broker_pid, *pg_children], timeout=5) == []


# -- supervision ------------------------------------------------------------------------------------------------

_SLEEPER = "import time; print('ready', flush=True); time.sleep(60)"
_STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
_WITH_GRANDCHILD = (
    "import subprocess, sys, time; "
    "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "print('grandchild', p.pid, flush=True); time.sleep(60)"
)


def test_supervisor_stop_all_leaves_nothing_behind(tmp_path: Path) -> None:
    sup = Supervisor(log_dir=tmp_path / "logs")
    sleeper = sup.start("sleeper", [PY, "-c", _SLEEPER])
    stubborn = sup.start("stubborn", [PY, "-c", _STUBBORN], log_to_file=False)
    parent = sup.start("parent", [PY, "-c", _WITH_GRANDCHILD])
    sleeper.wait_for_line("ready", 10)
    stubborn.wait_for_line(r"^ready$", 10)
    grandchild = int(parent.wait_for_line(r"grandchild \d+", 10).split()[1])
    pids = [p for p in (sleeper.pid, stubborn.pid, parent.pid, grandchild) if p is not None]
    assert len(pids) == 4
    t = time.monotonic()
    sup.stop_all(timeout=1.0)
    assert time.monotonic() - t < 4
    assert _wait_gone(pids, 1) == []
    sup.stop_all(timeout=1.0)  # idempotent
    assert (tmp_path / "logs" / "sleeper.log").read_text().strip() == "ready"


def test_supervisor_kill_restart_and_auto_restart(tmp_path: Path) -> None:
    sup = Supervisor(restart_backoff=(0.1, 1.0))
    try:
        proc = sup.start("svc", [PY, "-c", _SLEEPER], auto_restart=True)
        proc.wait_for_line("ready", 10)
        first = proc.pid
        # a kill through the supervisor holds the process down until restart()
        sup.kill("svc", signal.SIGKILL)
        assert proc.wait(5) == -signal.SIGKILL
        time.sleep(0.5)
        assert not proc.is_alive()
        sup.restart("svc").wait_for_line("ready", 10)
        assert proc.pid != first and proc.starts == 2
        # an unexpected death is restarted with backoff
        second = proc.pid
        assert second is not None
        psutil.Process(second).kill()
        deadline = time.monotonic() + 5
        while (proc.pid == second or not proc.is_alive()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.is_alive() and proc.pid != second and proc.starts == 3
        # readiness helpers fail fast when the process exits
        crash = sup.start("crash", [PY, "-c", "print('boom'); raise SystemExit(3)"])
        with pytest.raises(ProcessExitedError, match="boom"):
            crash.wait_for_line("never", 10)
        port = free_port()
        server = sup.start("http", [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"])
        server.wait_http_ok(f"http://127.0.0.1:{port}/", 10)
    finally:
        sup.stop_all(timeout=2)


def test_side_by_side_instances_do_not_collide(tmp_path: Path) -> None:
    b1, b2 = EmbeddedBroker(), EmbeddedBroker()
    p1, p2 = EmbeddedPostgres(tmp_path / "a", fast=True), EmbeddedPostgres(tmp_path / "b", fast=True)
    with b1, b2, p1, p2:
        assert b1.bootstrap_servers != b2.bootstrap_servers
        assert p1.socket_dir != p2.socket_dir

        async def check() -> None:
            await kafka_reachable(b1.bootstrap_servers)
            await kafka_reachable(b2.bootstrap_servers)
            for server in (p1, p2):
                conn = await asyncpg.connect(server.url)
                try:
                    assert await conn.fetchval("select current_setting('data_directory')") == str(
                        server.data_dir
                    )
                finally:
                    await conn.close()

        asyncio.run(check())
