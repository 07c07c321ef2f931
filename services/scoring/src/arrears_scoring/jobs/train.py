"""Training jobs: on the service's own history, or (demo only) on simulated customers. The fitting runs in
a worker thread; storing and activating runs in one transaction under the training lock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from ..features.pipeline import prepare
from ..history.rows import History, day_of
from ..history.store import load_history
from ..models.store import ModelView, record
from ..models.training import Trained, train_all
from ..simulate import simulate

DEMO_DAYS = 120
DEMO_SEED = 20


def _fit(history: History, end_day: int) -> list[Trained]:
    return train_all(prepare(history), end_day=end_day)


async def train_on_history(engine: AsyncEngine, schema: str, *, now: datetime, by: str) -> list[ModelView]:
    """Train on every row before today (UTC); raises InsufficientHistory when there is too little."""
    today = now.astimezone(UTC).date()
    start = datetime(today.year, today.month, today.day, tzinfo=UTC)
    async with engine.connect() as conn:
        history = await load_history(conn, schema, start)
    trained = await asyncio.to_thread(_fit, history, day_of(today))
    async with engine.begin() as conn:
        return await record(conn, schema, trained, source="history", by=by, now=now)


async def train_on_simulation(
    engine: AsyncEngine, schema: str, *, now: datetime, by: str, accounts: int, seed: int = DEMO_SEED
) -> list[ModelView]:
    """Demo: train on `accounts` simulated customers over the 120 days before today."""
    end = day_of(now.astimezone(UTC).date())

    def go() -> list[Trained]:
        sim = simulate(accounts, DEMO_DAYS, end_day=end, seed=seed)
        return _fit(sim.history, end)

    trained = await asyncio.to_thread(go)
    async with engine.begin() as conn:
        return await record(conn, schema, trained, source="simulated", by=by, now=now)
