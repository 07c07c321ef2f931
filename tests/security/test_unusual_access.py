"""The unusual-access alert (issue #18 item 9): a principal reading far more accounts than it usually does —
more than max(floor, factor x its baseline) distinct accounts in the window — raises one security event,
`arrears_unusual_access_total{principal_role}` and a log line; a normal reader raises nothing. Reads are
counted by the gate on account-disclosing routes (`accounts.read` with an `{account_id}`) of a real app, on
the real `iam` schema; two replicas' counts add up through `iam.access_counts`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from arrears_shared.auth import keys, lockout
from arrears_shared.auth.gate import Authenticator
from arrears_shared.auth.principal import Principal
from arrears_shared.auth.unusual_access import AccessPolicy, AccessWatch
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.settings import AuthSettings
from auth_support import bearer, issue_key_async
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .test_gate import make_app

FLOOR = 20


@pytest.fixture(scope="module")
def db_url(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("unusual_access")
    upgrade(url, "iam")
    return url


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    e = make_engine(db_url)
    yield e
    await e.dispose()


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[tuple[httpx.AsyncClient, Authenticator]]:
    authn = Authenticator(
        AuthSettings(
            auth_failure_slowdown_after=1000,
            auth_failure_block_after=1000,
            auth_unusual_access_floor=FLOOR,
            auth_unusual_access_factor=5.0,
            auth_access_flush_s=3600,
        )
    )
    authn.bind(engine)
    transport = httpx.ASGITransport(app=make_app(authn), client=("10.4.4.4", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as c:
        yield c, authn


def alerts(role: str) -> float:
    return REGISTRY.get_sample_value("arrears_unusual_access_total", {"principal_role": role}) or 0.0


async def events_for(engine: AsyncEngine, key: str) -> list[lockout.SecurityEvent]:
    async with engine.connect() as conn:
        found = await lockout.recent_events(conn, kind="unusual_access", limit=500)
    return [e for e in found if e.subject == keys.parse(key)]


async def eventually(check: Callable[[], object], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not await check():  # type: ignore[misc]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_a_bulk_reader_raises_the_alert_once_and_a_normal_reader_does_not(
    client: tuple[httpx.AsyncClient, Authenticator], engine: AsyncEngine
) -> None:
    http, authn = client
    async with engine.begin() as conn:
        bulk = await issue_key_async(conn, "collector", name="bulk-reader")
        normal = await issue_key_async(conn, "collector", name="normal-reader")
    before = alerts("collector")
    for _ in range(4):  # the same ten accounts, again and again: ten distinct accounts
        for i in range(10):
            assert (await http.get(f"/accounts/N-{i}", headers=bearer(normal))).status_code == 200
    for i in range(FLOOR):  # up to the floor: still usual
        assert (await http.get(f"/accounts/B-{i}", headers=bearer(bulk))).status_code == 200
    await asyncio.sleep(0.3)
    assert not await events_for(engine, bulk) and alerts("collector") == before
    for i in range(FLOOR, FLOOR + 30):  # well past it
        await http.get(f"/accounts/B-{i}", headers=bearer(bulk))

    async def raised() -> bool:
        return bool(await events_for(engine, bulk))

    await eventually(raised)
    await asyncio.sleep(0.3)
    [event] = await events_for(engine, bulk)  # once per window, however many reads follow
    assert event.role == "collector" and event.detail["name"] == "bulk-reader"
    assert event.detail["accounts"] == FLOOR + 1 and event.detail["threshold"] == FLOOR
    assert alerts("collector") == before + 1
    assert not await events_for(engine, normal)
    assert authn.access.recent_count(keys.parse(normal) or "") == 10
    # what discloses no account is not counted: a refused read (403) and other routes
    async with engine.begin() as conn:
        viewer = await issue_key_async(conn, "viewer")
    for i in range(FLOOR + 5):
        assert (await http.get(f"/accounts/V-{i}", headers=bearer(viewer))).status_code == 403
        await http.post(f"/approvals/V-{i}/approve", headers=bearer(bulk))
    assert authn.access.recent_count(keys.parse(viewer) or "") == 0
    assert authn.access.recent_count(keys.parse(bulk) or "") == FLOOR + 30


async def test_the_threshold_follows_the_principals_usual_volume(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        heavy = await issue_key_async(conn, "supervisor", name="heavy-usual")
        heavy_id = keys.parse(heavy) or ""
        # its history: 40 accounts in each of six 10-minute windows over the last days
        for days_ago in range(1, 7):
            await conn.execute(
                text(
                    "INSERT INTO iam.access_counts (principal, bucket, role, accounts) VALUES"
                    " (:p, date_trunc('minute', now()) - make_interval(days => :d), 'supervisor', 40)"
                ),
                {"p": heavy_id, "d": days_ago},
            )
    watch = AccessWatch(AccessPolicy(floor=FLOOR, factor=5.0, flush_s=3600), "test", engine)
    who = Principal("heavy-usual", frozenset({"supervisor"}), "api_key", heavy_id)
    now = time.time()
    for i in range(60):  # above the floor, far below 5 x 40 = 200: usual for this principal
        watch.note(who, f"H-{i}", now)
    await asyncio.sleep(0.5)
    assert watch._baseline[heavy_id] == 40.0
    assert not await events_for(engine, heavy)
    for i in range(60, 201):  # 201 > 200
        watch.note(who, f"H-{i}", now)

    async def raised() -> bool:
        return bool(await events_for(engine, heavy))

    await eventually(raised)
    [event] = await events_for(engine, heavy)
    assert event.detail["threshold"] == 200 and event.detail["baseline"] == 40.0


async def test_reads_spread_over_two_replicas_add_up_at_the_flush(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        spread = await issue_key_async(conn, "collector", name="spread-reader")
    spread_id = keys.parse(spread) or ""
    who = Principal("spread-reader", frozenset({"collector"}), "api_key", spread_id)
    a, b = (AccessWatch(AccessPolicy(floor=FLOOR, flush_s=3600), f"replica-{n}", engine) for n in "ab")
    now = time.time()
    for i in range(15):  # 15 each: neither replica alone is above the floor of 20
        assert not a.note(who, f"S-{i}", now)
        assert not b.note(who, f"S-{100 + i}", now)
    await a.flush(now)
    assert not await events_for(engine, spread)
    await b.flush(now)  # the second flush sees 30 in the window, cluster-wide
    [event] = await events_for(engine, spread)
    assert event.detail["accounts"] == 30 and event.detail["seen_by"] == "cluster"
    async with engine.connect() as conn:
        stored = await conn.scalar(
            text("SELECT sum(accounts) FROM iam.access_counts WHERE principal = :p"), {"p": spread_id}
        )
    assert stored == 30
    await a.flush(now)  # nothing new: nothing written twice, nothing raised twice
    assert len(await events_for(engine, spread)) == 1


async def test_a_failed_flush_keeps_its_counts_for_the_next_one(engine: AsyncEngine, db_url: str) -> None:
    """The database refuses one flush: the reads it would have written are not marked flushed, so the next
    flush writes them, once."""
    async with engine.begin() as conn:
        key = await issue_key_async(conn, "collector", name="retry-reader")
    key_id = keys.parse(key) or ""
    who = Principal("retry-reader", frozenset({"collector"}), "api_key", key_id)
    broken = make_engine(db_url.rsplit("/", 1)[0] + "/no_such_database")
    watch = AccessWatch(AccessPolicy(floor=FLOOR, flush_s=3600), "replica-c", broken)
    now = time.time()
    for i in range(FLOOR - 5):  # under the floor: no alert of this replica's own
        assert not watch.note(who, f"R-{i}", now)
    with pytest.raises(Exception):  # noqa: B017 - any database error: the point is what stays behind
        await watch.flush(now)
    await broken.dispose()
    watch.engine = engine
    await watch.flush(now)
    async with engine.connect() as conn:
        stored = await conn.scalar(
            text("SELECT sum(accounts) FROM iam.access_counts WHERE principal = :p"), {"p": key_id}
        )
    assert stored == FLOOR - 5
    await watch.flush(now)  # nothing new: nothing written twice
    async with engine.connect() as conn:
        again = await conn.scalar(
            text("SELECT sum(accounts) FROM iam.access_counts WHERE principal = :p"), {"p": key_id}
        )
    assert again == FLOOR - 5
