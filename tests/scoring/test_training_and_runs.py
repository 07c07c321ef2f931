"""On a real PostgreSQL: every model version is stored, one that does not beat the active model on the
latest window is not activated, and the daily run happens once per day even when two replicas start it at
the same moment, with one `AccountScored` per open account under the id `score:<account>:<day>`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from arrears_scoring.features.pipeline import prepare
from arrears_scoring.jobs.daily import NoActiveModel, run_day
from arrears_scoring.models.linear import LinearModel
from arrears_scoring.models.store import active_models, list_models, record
from arrears_scoring.models.training import Trained, train_all
from arrears_scoring.simulate import simulate
from arrears_shared.cloudevents import header_map
from arrears_shared.db.engine import make_engine
from arrears_shared.stream.transaction import transaction
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

S = "scoring"
TODAY = date(2026, 12, 1)
END = (TODAY - date(1970, 1, 1)).days
NOW = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def trained() -> list[Trained]:
    return train_all(prepare(simulate(3000, 100, end_day=END, seed=11).history))


@pytest.fixture
def db_url(fresh_database_url: Callable[..., str]) -> str:
    return fresh_database_url("scoring", migrate=True)  # alembic runs its own loop: not in an async fixture


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    e = make_engine(db_url)
    yield e
    await e.dispose()


def _worse(t: Trained) -> Trained:
    """The same model with its coefficients scrambled: it ranks no better than chance on the window."""
    m = t.model
    rng = np.random.default_rng(1)
    bad = LinearModel(m.kind, m.features, m.mean, m.scale, rng.permutation(m.coef) * -1, m.intercept, m.link)
    from arrears_scoring.models.training import evaluate

    return Trained(t.kind, bad, t.window, evaluate(bad, t.test_x, t.test_y), t.rows, t.test_x, t.test_y)


async def test_every_version_is_kept_and_a_worse_model_is_not_activated(
    engine: AsyncEngine, trained: list[Trained]
) -> None:
    pay = next(t for t in trained if t.kind == "pay14")
    assert pay.metrics["auc"] > 0.7 and 0 < pay.metrics["brier"] < 0.25 and pay.metrics["calibration"]
    async with engine.begin() as conn:
        first = await record(conn, S, trained, source="simulated", by="test", now=NOW)
    assert all(m.active for m in first) and {m.kind for m in first} == {"pay14", "dropout", "recovery"}
    worse = [_worse(t) for t in trained]
    async with engine.begin() as conn:
        second = await record(conn, S, worse, source="simulated", by="test", now=NOW + timedelta(minutes=1))
    assert not any(m.active for m in second), [m.decision for m in second]
    assert all(m.decision.startswith("not activated") for m in second)
    assert second[0].metrics["active_on_window"]["version"] == first[0].version
    async with engine.connect() as conn:
        active = await active_models(conn, S)
        versions = await list_models(conn, S)
    assert {v for v, _ in active.values()} == {m.version for m in first}
    assert len(versions) == 6 and sum(v.active for v in versions) == 3
    # ... and a better one is: the original beats the scrambled model once that is active
    async with engine.begin() as conn:
        await conn.execute(text(f"UPDATE {S}.models SET active = false"))
        await conn.execute(
            text(f"UPDATE {S}.models SET active = true WHERE version = ANY(:v)"),
            {"v": [m.version for m in second]},
        )
    async with engine.begin() as conn:
        third = await record(conn, S, trained, source="simulated", by="test", now=NOW + timedelta(minutes=2))
    assert all(m.active for m in third), [m.decision for m in third]


async def _seed_history(engine: AsyncEngine, n: int) -> list[str]:
    ids = [f"SC-{i:03d}" for i in range(n)]
    async with engine.begin() as conn:
        for i, a in enumerate(ids):
            for k, bal in enumerate((50_000, 30_000 if i % 3 == 0 else 50_000)):
                await conn.execute(
                    text(
                        f"""INSERT INTO {S}.snapshots VALUES (:a, :at, :bal, 'USD', :due, :open, true, :email, false)"""
                    ),
                    {
                        "a": a,
                        "at": NOW - timedelta(days=20 - 10 * k),
                        "bal": bal if i != n - 1 else 0,
                        "due": TODAY - timedelta(days=30 + i),
                        "open": i != n - 1,  # the last one is paid: not scored
                        "email": i % 2 == 0,
                    },
                )
            await conn.execute(
                text(f"INSERT INTO {S}.messages VALUES (:n, :a, :at, 'sms', 14, 'reminder')"),
                {"n": f"{a}:n1", "a": a, "at": NOW - timedelta(days=5)},
            )
        # a row after the run's moment must not be read for the run's scores
        await conn.execute(
            text(
                f"INSERT INTO {S}.snapshots VALUES ('SC-LATE', :at, 1000, 'USD', :due, true, true, true, false)"
            ),
            {"at": NOW + timedelta(minutes=1), "due": TODAY - timedelta(days=40)},
        )
    return ids


async def test_the_day_runs_once_across_two_concurrent_replicas(
    engine: AsyncEngine, db_url: str, trained: list[Trained]
) -> None:
    ids = await _seed_history(engine, 12)
    async with transaction(engine, S, "scoring") as tx:
        with pytest.raises(NoActiveModel):
            await run_day(tx, TODAY, now=NOW, by="test")
    async with engine.begin() as conn:
        await record(conn, S, trained, source="simulated", by="test", now=NOW)
    other = make_engine(db_url)
    try:

        async def replica(e: AsyncEngine, name: str) -> object:
            async with transaction(e, S, "scoring") as tx:
                return await run_day(tx, TODAY, now=NOW, by=name)

        results = await asyncio.gather(replica(engine, "a"), replica(other, "b"))
    finally:
        await other.dispose()
    ran = [r for r in results if r.ran]  # type: ignore[attr-defined]
    assert len(ran) == 1, results
    assert ran[0].accounts == 11 and ran[0].published == 11  # type: ignore[attr-defined]
    async with engine.connect() as conn:
        out = (await conn.execute(text(f"SELECT headers, value FROM {S}.outbox ORDER BY id"))).all()
        runs = (await conn.execute(text(f"SELECT count(*) FROM {S}.runs"))).scalar_one()
    assert runs == 1
    got = {}
    for headers, value in out:
        h = header_map(
            [(k, v.encode()) for k, v in (json.loads(headers) if isinstance(headers, str) else headers)]
        )
        got[h["ce_id"]] = json.loads(value)
    assert set(got) == {f"score:{a}:{TODAY.isoformat()}" for a in ids[:-1]}
    ev = got[f"score:{ids[0]}:{TODAY.isoformat()}"]
    assert ev["scored_on"] == TODAY.isoformat() and ev["band"] in ("low", "medium", "high")
    assert ev["best_channel"] in ("sms", "email") and 8 <= ev["best_hour"] <= 20
    assert 0 <= ev["risk_score"] <= 100 and ev["model_version"].startswith("pay14-")
    assert abs(ev["expected_recovery_minor"] - ev["expected_recovery"] * 30_000) <= 2  # of the latest balance
    # account 1 consents to SMS only: the proposal never names a channel it cannot be reached on
    assert got[f"score:{ids[1]}:{TODAY.isoformat()}"]["best_channel"] == "sms"
    # running the day again (a restart, another replica, the API) publishes nothing new
    async with transaction(engine, S, "scoring") as tx:
        again = await run_day(tx, TODAY, now=NOW + timedelta(hours=2), by="c")
    assert not again.ran and again.detail == "the day has run already"
    async with engine.connect() as conn:
        assert (await conn.execute(text(f"SELECT count(*) FROM {S}.outbox"))).scalar_one() == len(out)


async def test_too_little_history_is_not_retried_at_every_check(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each training try reads the whole history: after one found too little, this replica waits
    `ARREARS_SCORING_TRAINING_RETRY_S` before the next, instead of trying every minute."""
    from types import SimpleNamespace

    from arrears_scoring.jobs import scheduled
    from arrears_scoring.settings import ScoringSettings

    tries: list[datetime] = []
    real = scheduled.train_on_history

    async def counted(*args: object, **kw: object) -> object:
        tries.append(kw["now"])  # type: ignore[arg-type]
        return await real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(scheduled, "train_on_history", counted)
    monkeypatch.setattr(scheduled, "_retry_after", None)
    ctx = SimpleNamespace(
        engine=engine,
        schema=S,
        settings=ScoringSettings(scoring_training_retry_s=3600, scoring_demo_model=False),
    )
    for minutes in (0, 1, 2, 59, 61):
        await scheduled.ensure_models(ctx, NOW + timedelta(minutes=minutes))  # type: ignore[arg-type]
    assert tries == [NOW, NOW + timedelta(minutes=61)]
